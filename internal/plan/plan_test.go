package plan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/node"
)

// memNode is a node whose files live in memory and whose only commands are
// the two StaleFiles runs; a fake for our own logic.
type memNode struct {
	files map[string][]byte
	reads int
}

func (m *memNode) Name() string    { return "n1" }
func (m *memNode) Address() string { return "192.0.2.1" }
func (m *memNode) Run(_ context.Context, c node.Cmd) (node.Result, error) {
	switch {
	case c.Argv[0] == "stat":
		return node.Result{Stdout: []byte("644 root\n")}, nil
	case c.Argv[0] == "sh" && strings.Contains(c.Argv[2], "sha256sum"):
		data, ok := m.files[c.Argv[4]]
		if !ok {
			return node.Result{}, nil
		}
		sum := sha256.Sum256(data)
		return node.Result{Stdout: []byte(hex.EncodeToString(sum[:]) + "  " + c.Argv[4] + "\n")}, nil
	}
	return node.Result{}, &node.CommandError{Node: "n1", Argv: c.Argv, ExitCode: 127}
}
func (m *memNode) WriteFile(context.Context, string, []byte, fs.FileMode, string) error { return nil }
func (m *memNode) ReadFile(_ context.Context, p string) ([]byte, error) {
	m.reads++
	if d, ok := m.files[p]; ok {
		return d, nil
	}
	return nil, fs.ErrNotExist
}
func (m *memNode) Services() node.Supervisor { return nil }

func TestStaleFiles(t *testing.T) {
	big := bytes.Repeat([]byte("x"), bigFile+1)
	n := &memNode{files: map[string][]byte{
		"/etc/same":  []byte("a\n"),
		"/etc/other": []byte("old\n"),
		"/bin/big":   big,
		"/bin/big2":  append([]byte{}, big[:len(big)-1]...),
	}}
	files := []engine.File{
		{Path: "/etc/same", Mode: 0o644, Content: []byte("a\n")},
		{Path: "/etc/other", Mode: 0o644, Content: []byte("new\n")},
		{Path: "/etc/missing", Mode: 0o644, Content: []byte("m\n")},
		{Path: "/bin/big", Mode: 0o644, Content: big},
		{Path: "/bin/big2", Mode: 0o644, Content: append(big[:len(big)-1:len(big)-1], 'y')},
		{Path: "/bin/big-missing", Mode: 0o644, Content: big},
	}
	stale, err := StaleFiles(context.Background(), n, files)
	if err != nil {
		t.Fatal(err)
	}
	if got := Paths(stale); got != "/etc/other, /etc/missing, /bin/big2, /bin/big-missing" {
		t.Errorf("stale: %s", got)
	}
	if n.reads != 3 {
		t.Errorf("%d files read back; the big ones must be compared by digest", n.reads)
	}
}
