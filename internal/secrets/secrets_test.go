package secrets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateOnFirstNeedAndKeep(t *testing.T) {
	dir := t.TempDir()
	p := PathFor(filepath.Join(dir, "hastack.yaml"))
	if p != filepath.Join(dir, "hastack.secrets.yaml") {
		t.Fatalf("PathFor: %s", p)
	}
	s, err := Open(p, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("Save wrote a file although no secret was generated")
	}
	a := s.Get(ErlangCookie)
	b := s.Get(RabbitAdminPassword)
	if len(a) != 32 || a == b || s.Get(ErlangCookie) != a {
		t.Fatalf("secrets: %q %q", a, b)
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o", fi.Mode().Perm())
	}
	s2, err := Open(p, "lab")
	if err != nil {
		t.Fatal(err)
	}
	if s2.Get(ErlangCookie) != a || s2.Get(RabbitAdminPassword) != b {
		t.Fatal("secrets changed across a reload")
	}
}

func TestRefusesWideModeAndOtherCluster(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.secrets.yaml")
	s, _ := Open(p, "lab")
	s.Get(ErlangCookie)
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(p, "prod"); err == nil || !strings.Contains(err.Error(), `belongs to cluster "lab"`) {
		t.Fatalf("other cluster: %v", err)
	}
	os.Chmod(p, 0o644)
	if _, err := Open(p, "lab"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("wide mode: %v", err)
	}
}

func TestGeneratedAlphabet(t *testing.T) {
	s, _ := Open(filepath.Join(t.TempDir(), "s.yaml"), "lab")
	seen := map[rune]bool{}
	for i := 0; i < 200; i++ {
		for _, r := range s.Get(string(rune('a'+i%26)) + strings.Repeat("x", i)) {
			if !strings.ContainsRune(alphabet, r) {
				t.Fatalf("character %q outside the alphabet", r)
			}
			seen[r] = true
		}
	}
	if len(seen) < 50 {
		t.Fatalf("only %d distinct characters in 6400", len(seen))
	}
}
