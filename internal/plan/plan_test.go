package plan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/spec"
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

// TestNodeSteps: every node is planned at once (each fn call waits until
// all have started, which would deadlock if they ran one after another),
// the steps come back in the nodes' order without the nodes that have
// nothing to do, and every error is returned with its host's name.
func TestNodeSteps(t *testing.T) {
	nodes := []spec.Node{{Name: "ctl1"}, {Name: "ctl2"}, {Name: "ctl3"}, {Name: "cmp1"}}
	// Every planner waits until all have started, which only a parallel
	// NodeSteps lets happen; the wait is bounded, so that a serial one
	// fails here instead of hanging the whole test run.
	var started sync.WaitGroup
	started.Add(len(nodes))
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	steps, err := NodeSteps(context.Background(), nodes, func(ctx context.Context, n spec.Node) (*Step, error) {
		started.Done()
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			return nil, errors.New("the other nodes were not planned at the same time")
		}
		if n.Name == "ctl2" {
			return nil, nil
		}
		return &Step{Host: n.Name, Action: "act on " + n.Name}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.Host)
	}
	if strings.Join(got, ",") != "ctl1,ctl3,cmp1" {
		t.Errorf("steps for %v, want ctl1,ctl3,cmp1 in the nodes' order", got)
	}

	boom := errors.New("boom")
	steps, err = NodeSteps(context.Background(), nodes, func(ctx context.Context, n spec.Node) (*Step, error) {
		if n.Name == "ctl1" || n.Name == "cmp1" {
			return nil, boom
		}
		return &Step{Host: n.Name}, nil
	})
	if steps != nil || !errors.Is(err, boom) || !strings.Contains(err.Error(), "ctl1: boom") || !strings.Contains(err.Error(), "cmp1: boom") {
		t.Errorf("two failing nodes: %v, %v; want no steps and both errors named", steps, err)
	}
}
