package secrets

import (
	"path/filepath"
	"sync"
	"testing"
)

// A Store asked for a missing secret from many goroutines at once hands
// every one the same value (run under -race: no concurrent map access).
func TestStoreConcurrentGet(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "c.secrets.yaml"), "c")
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = s.Get(DatabaseAdminPassword) }()
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] || got[i] == "" {
			t.Fatalf("goroutine %d got %q, goroutine 0 got %q: each must see the one secret", i, got[i], got[0])
		}
	}
}

// A Values snapshot is read-only: reading a missing secret from many
// goroutines generates nothing, in the snapshot or in the store.
func TestValuesReadOnly(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "c.secrets.yaml"), "c")
	if err != nil {
		t.Fatal(err)
	}
	s.Set(map[string]string{ErlangCookie: "cookie"})
	v := s.Values()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := v.Get(DatabaseAdminPassword); got != "" {
				t.Errorf("missing secret read as %q, want empty", got)
			}
			if got := v.Get(ErlangCookie); got != "cookie" {
				t.Errorf("cookie read as %q", got)
			}
		}()
	}
	wg.Wait()
	if s.Has(DatabaseAdminPassword) || v.Has(DatabaseAdminPassword) {
		t.Fatal("reading a Values generated a secret")
	}
	// A later change to the store does not reach an earlier snapshot.
	s.Set(map[string]string{ErlangCookie: "other"})
	if v.Get(ErlangCookie) != "cookie" {
		t.Fatal("snapshot changed with the store")
	}
}

func TestOpenRefusesUnsafeValues(t *testing.T) {
	for _, bad := range []string{"", "a'b", "a b", "a\\b", "x\ny"} {
		p := filepath.Join(t.TempDir(), "c.secrets.yaml")
		s, _ := Open(p, "c")
		s.values[DatabaseAdminPassword] = bad
		s.dirty = true
		if err := s.Save(); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(p, "c"); err == nil {
			t.Errorf("value %q accepted", bad)
		}
	}
}
