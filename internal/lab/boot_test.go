package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseOS(t *testing.T) {
	for _, name := range []string{"debian-12", "debian-13"} {
		if r, err := ParseOS(name); err != nil || r.Name != name || r.Suite == "" {
			t.Errorf("%s: %+v %v", name, r, err)
		}
	}
	for _, bad := range []string{"", "debian-11", "ubuntu-24.04", "Debian-12"} {
		if _, err := ParseOS(bad); err == nil || !strings.Contains(err.Error(), "use one of debian-12, debian-13") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(p, []byte("a\nb\nc\nd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := tail(p, 2); got != "  c\n  d" {
		t.Errorf("tail: %q", got)
	}
	if got := tail(filepath.Join(t.TempDir(), "none"), 2); !strings.Contains(got, "no such file") {
		t.Errorf("tail of a missing file: %q", got)
	}
}

// A build cut short leaves an image folder without its marker (written
// last) or without its repository's index: never taken for an image.
func TestHalfBuiltImageIsNotReady(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "debian-12")
	write := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "etc/os-release"))
	if imageReady(dir) {
		t.Fatal("an image without its marker is ready")
	}
	write(filepath.Join(dir, imageMarker))
	if imageReady(dir) {
		t.Fatal("an image without its package repository is ready")
	}
	write(filepath.Join(dir+".repo", "Packages"))
	if !imageReady(dir) {
		t.Fatal("a finished image is not ready")
	}
}
