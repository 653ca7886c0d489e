package memcached

import (
	"strings"
	"testing"
)

// TestClientServer checks the hash against python-memcached's own
// cmemcache_hash (values computed with Debian 12's python3-memcache 1.58).
func TestClientServer(t *testing.T) {
	for _, c := range []struct {
		key  string
		hash int
	}{
		{"a", 26807},
		{"hello", 13840},
		{"oslo_cache:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", 23872},
		{strings.Repeat("x", 200), 32459},
	} {
		for _, n := range []int{1, 2, 3, 4} {
			if got, want := ClientServer(c.key, n), c.hash%n; got != want {
				t.Errorf("ClientServer(%.20q, %d) = %d, want %d", c.key, n, got, want)
			}
		}
	}
}

func TestKeyMoves(t *testing.T) {
	old := []string{"a:1", "b:1", "c:1"}
	held := map[string][]string{}
	for i := range 3000 {
		k := "key" + strings.Repeat("k", i%7) + string(rune('a'+i%26)) + strings.Repeat("z", i%13) + string(rune('A'+i%17))
		srv := old[ClientServer(k, 3)]
		held[srv] = append(held[srv], k)
	}
	// Remove c: its keys are gone; a key on a or b stays only where the
	// two-server hash agrees.
	m := KeyMoves(held, old, []string{"a:1", "b:1"})
	if m.Keys != 3000 || m.Gone != len(held["c:1"]) {
		t.Errorf("remove: %+v, want keys 3000 and gone %d", m, len(held["c:1"]))
	}
	var want int
	for _, s := range []string{"a:1", "b:1"} {
		for _, k := range held[s] {
			if []string{"a:1", "b:1"}[ClientServer(k, 2)] != s {
				want++
			}
		}
	}
	if m.Moved != want || want == 0 {
		t.Errorf("remove: moved %d, want %d (>0)", m.Moved, want)
	}
	// The same list moves nothing.
	if m := KeyMoves(held, old, old); m.Moved != 0 || m.Gone != 0 {
		t.Errorf("unchanged list: %+v", m)
	}
}
