package deploy

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// fileNode keeps files in memory and understands the two commands the lock
// runs: an exclusive create and rm -f. It stands in for a controller.
type fileNode struct {
	name  string
	mu    sync.Mutex
	files map[string][]byte
	down  bool
}

func (f *fileNode) Name() string    { return f.name }
func (f *fileNode) Address() string { return "" }
func (f *fileNode) Run(_ context.Context, c node.Cmd) (node.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return node.Result{}, errors.New("no route to host")
	}
	switch {
	case len(c.Argv) == 3 && c.Argv[0] == "sh" && strings.HasSuffix(c.Argv[2], "set -C && cat > "+LockPath):
		if _, ok := f.files[LockPath]; ok {
			return node.Result{ExitCode: 2}, &node.CommandError{Node: f.name, Argv: c.Argv, ExitCode: 2, Output: "cannot create: File exists"}
		}
		data, _ := io.ReadAll(c.Stdin)
		f.files[LockPath] = data
	case len(c.Argv) == 3 && c.Argv[0] == "rm":
		delete(f.files, c.Argv[2])
	default:
		return node.Result{}, errors.New("unexpected command " + strings.Join(c.Argv, " "))
	}
	return node.Result{}, nil
}
func (f *fileNode) WriteFile(context.Context, string, []byte, fs.FileMode, string) error {
	return errors.New("not used")
}
func (f *fileNode) ReadFile(_ context.Context, p string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errors.New("no route to host")
	}
	d, ok := f.files[p]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return d, nil
}
func (f *fileNode) Services() node.Supervisor { return nil }

func ctls(n int) ([]node.Node, []*fileNode) {
	var nodes []node.Node
	var fs []*fileNode
	for i := range n {
		f := &fileNode{name: "ctl" + string(rune('1'+i)), files: map[string][]byte{}}
		nodes = append(nodes, f)
		fs = append(fs, f)
	}
	return nodes, fs
}

func quiet(string, ...any) {}

func TestLockExcludesASecondHolder(t *testing.T) {
	ctx := context.Background()
	nodes, fns := ctls(3)
	first := Me("up")
	l1, err := AcquireLock(ctx, nodes, first, false, quiet)
	if err != nil {
		t.Fatal(err)
	}
	second := Me("up")
	second.PID, second.Host, second.BootID = 4242, "other-machine", "x"
	_, err = AcquireLock(ctx, nodes, second, false, quiet)
	var le *LockedError
	if !errors.As(err, &le) || le.Holder.Token != first.Token || len(le.On) != 3 {
		t.Fatalf("second acquire: %v", err)
	}
	if !strings.Contains(err.Error(), "--break-lock") || !strings.Contains(err.Error(), first.Host) {
		t.Errorf("refusal does not say who holds it and how to break it: %v", err)
	}
	l1.Release(ctx)
	for _, f := range fns {
		if len(f.files) != 0 {
			t.Fatalf("%s still holds a lock after release", f.name)
		}
	}
	if _, err := AcquireLock(ctx, nodes, second, false, quiet); err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
}

// Half the controllers locked by another (two hastacks racing): nothing is
// kept, so the loser leaves no lock behind.
func TestLockPartialIsReleased(t *testing.T) {
	ctx := context.Background()
	nodes, fns := ctls(3)
	other := Me("drill")
	other.Token = "other"
	if _, err := AcquireLock(ctx, nodes[1:2], other, false, quiet); err != nil {
		t.Fatal(err)
	}
	if _, err := AcquireLock(ctx, nodes, Me("up"), false, quiet); err == nil {
		t.Fatal("acquired a lock another holds on ctl2")
	}
	if len(fns[0].files) != 0 || len(fns[2].files) != 0 || len(fns[1].files) != 1 {
		t.Error("the refused acquire left its own locks behind, or removed the other's")
	}
}

func TestLockBreakAndUnreachable(t *testing.T) {
	ctx := context.Background()
	nodes, fns := ctls(3)
	// A holder on this machine whose process is gone: stale, and said so.
	dead := Me("up")
	dead.PID = 1 << 22 // beyond pid_max
	dead.Token = "dead"
	if _, err := AcquireLock(ctx, nodes, dead, false, quiet); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(dead.PID, 0); err == nil {
		t.Skip("pid in use")
	}
	_, err := AcquireLock(ctx, nodes, Me("up"), false, quiet)
	if err == nil || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("stale lock not called stale: %v", err)
	}
	// Broken on request; one controller down does not stop it.
	fns[2].down = true
	var said []string
	l, err := AcquireLock(ctx, nodes, Me("up"), true, func(f string, a ...any) { said = append(said, f) })
	if err != nil {
		t.Fatal(err)
	}
	if len(l.nodes) != 2 || len(said) != 2 {
		t.Errorf("held on %d controllers, %d removals reported", len(l.nodes), len(said))
	}
	// No controller answers: refused.
	for _, f := range fns {
		f.down = true
	}
	if _, err := AcquireLock(ctx, nodes, Me("up"), false, quiet); err == nil || !strings.Contains(err.Error(), "no controller answered") {
		t.Errorf("every controller down: %v", err)
	}
	_ = time.Second
}
