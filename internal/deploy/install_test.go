package deploy

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/node"
)

// fakeNode records what a phase does to a host; only for our own logic.
type fakeNode struct {
	files map[string][]byte
	log   []string
}

func (f *fakeNode) Name() string    { return "h1" }
func (f *fakeNode) Address() string { return "192.0.2.10" }
func (f *fakeNode) Run(_ context.Context, c node.Cmd) (node.Result, error) {
	f.log = append(f.log, "run "+strings.Join(c.Argv, " "))
	if c.Argv[0] == "rm" {
		delete(f.files, c.Argv[len(c.Argv)-1])
	}
	return node.Result{}, nil
}
func (f *fakeNode) WriteFile(_ context.Context, p string, data []byte, _ fs.FileMode, _ string) error {
	f.log = append(f.log, "write "+p)
	f.files[p] = data
	return nil
}
func (f *fakeNode) ReadFile(_ context.Context, p string) ([]byte, error) {
	if d, ok := f.files[p]; ok {
		return d, nil
	}
	return nil, fs.ErrNotExist
}
func (f *fakeNode) Services() node.Supervisor { return nil }

func TestInstallQuietly(t *testing.T) {
	n := &fakeNode{files: map[string][]byte{}}
	if err := installQuietly(context.Background(), n, []string{"mariadb-server", "memcached"}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"write /usr/sbin/policy-rc.d",
		"run apt-get install -y -q --no-install-recommends mariadb-server memcached",
		"run rm -f /usr/sbin/policy-rc.d",
	}
	if strings.Join(n.log, "\n") != strings.Join(want, "\n") {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(n.log, "\n"), strings.Join(want, "\n"))
	}
	if _, ok := n.files["/usr/sbin/policy-rc.d"]; ok {
		t.Error("policy-rc.d left in place")
	}

	// A host with its own policy-rc.d keeps it.
	n = &fakeNode{files: map[string][]byte{"/usr/sbin/policy-rc.d": []byte("#!/bin/sh\nexit 0\n")}}
	if err := installQuietly(context.Background(), n, []string{"chrony"}); err != nil {
		t.Fatal(err)
	}
	if len(n.log) != 1 || !strings.HasPrefix(n.log[0], "run apt-get") {
		t.Errorf("with an existing policy-rc.d: %v", n.log)
	}
}

// On this machine, a package that is there is not installed again.
func TestInstallMissingNothingToDo(t *testing.T) {
	done, err := InstallMissing(context.Background(), node.Local{}, []string{"dpkg"})
	if err != nil || len(done) != 0 {
		t.Fatalf("InstallMissing(dpkg) = %v, %v; want nothing to do", done, err)
	}
}
