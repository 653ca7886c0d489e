package drill

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/node"
)

// dirNode keeps folders and files in memory and understands the commands
// the two locks run (mkdir, mkdir -p, rm -rf, rm -f, the cluster lock's
// exclusive create). It stands in for a controller.
type dirNode struct {
	name  string
	mu    sync.Mutex
	dirs  map[string]bool
	files map[string][]byte
}

func newDirNode(name string) *dirNode {
	return &dirNode{name: name, dirs: map[string]bool{}, files: map[string][]byte{}}
}

func (d *dirNode) Name() string    { return d.name }
func (d *dirNode) Address() string { return "" }
func (d *dirNode) fail(c node.Cmd, msg string) (node.Result, error) {
	return node.Result{ExitCode: 1}, &node.CommandError{Node: d.name, Argv: c.Argv, ExitCode: 1, Output: msg}
}
func (d *dirNode) Run(_ context.Context, c node.Cmd) (node.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := c.Argv
	switch {
	case len(a) == 3 && a[0] == "mkdir" && a[1] == "-p":
		d.dirs[a[2]] = true
	case len(a) == 2 && a[0] == "mkdir":
		if d.dirs[a[1]] {
			return d.fail(c, "mkdir: cannot create directory: File exists")
		}
		d.dirs[a[1]] = true
	case len(a) == 3 && a[0] == "rm" && a[1] == "-rf":
		delete(d.dirs, a[2])
		for p := range d.files {
			if strings.HasPrefix(p, a[2]+"/") {
				delete(d.files, p)
			}
		}
	case len(a) == 3 && a[0] == "rm" && a[1] == "-f":
		delete(d.files, a[2])
	case len(a) == 3 && a[0] == "sh" && strings.HasSuffix(a[2], "set -C && cat > "+deploy.LockPath):
		if _, ok := d.files[deploy.LockPath]; ok {
			return d.fail(c, "cannot create: File exists")
		}
		data, _ := io.ReadAll(c.Stdin)
		d.files[deploy.LockPath] = data
	default:
		return node.Result{}, errors.New("unexpected command " + strings.Join(a, " "))
	}
	return node.Result{}, nil
}
func (d *dirNode) WriteFile(_ context.Context, p string, data []byte, _ fs.FileMode, _ string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.files[p] = data
	return nil
}
func (d *dirNode) ReadFile(_ context.Context, p string) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	data, ok := d.files[p]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return data, nil
}
func (d *dirNode) Services() node.Supervisor { return nil }

func lockCluster() (*dirNode, []node.Node, []*dirNode) {
	var ns []node.Node
	var ds []*dirNode
	for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
		d := newDirNode(n)
		ns = append(ns, d)
		ds = append(ds, d)
	}
	return ds[0], ns, ds
}

// A second drill is refused with who holds the lock and since when, and
// takes nothing; the first drill's locks go when it releases them.
func TestSecondDrillRefused(t *testing.T) {
	ctx := context.Background()
	first, ctls, ds := lockCluster()
	var notes []string
	say := func(f string, a ...any) { notes = append(notes, f) }
	me := deploy.Me("drill run kill-db")
	l, err := TakeLocks(ctx, first, ctls, me, say)
	if err != nil {
		t.Fatal(err)
	}
	if !first.dirs[LockDir] {
		t.Fatal("no drill lock on the first controller")
	}
	for _, d := range ds {
		if _, ok := d.files[deploy.LockPath]; !ok {
			t.Fatalf("%s: no cluster lock while the drill runs", d.name)
		}
	}
	other := deploy.Me("drill run cut-node")
	_, err = TakeLocks(ctx, first, ctls, other, say)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "hastack drill run kill-db") || !strings.Contains(err.Error(), me.Since.Format("2006-01-02T15:04:05Z07:00")) {
		t.Fatalf("second drill: %v; want ErrBusy naming the first drill and its start", err)
	}
	// An operator's 'up' meanwhile is refused, naming the drill.
	_, err = deploy.AcquireLock(ctx, ctls, deploy.Me("up"), false, say)
	var le *deploy.LockedError
	if !errors.As(err, &le) || le.Holder.Token != me.Token {
		t.Fatalf("up during a drill: %v; want the cluster locked by the drill", err)
	}
	l.Release(ctx)
	if first.dirs[LockDir] || len(first.files) != 0 {
		t.Fatalf("locks left after release: dirs %v files %v", first.dirs, first.files)
	}
	for _, d := range ds {
		if _, ok := d.files[deploy.LockPath]; ok {
			t.Fatalf("%s: cluster lock left after release", d.name)
		}
	}
	// Now a second drill runs.
	l2, err := TakeLocks(ctx, first, ctls, other, say)
	if err != nil {
		t.Fatalf("drill after release: %v", err)
	}
	l2.Release(ctx)
}

// While an 'up' holds the cluster lock, a drill is refused with the up
// named, and leaves no drill lock behind.
func TestDrillRefusedWhileUpRuns(t *testing.T) {
	ctx := context.Background()
	first, ctls, _ := lockCluster()
	up := deploy.Me("up")
	ul, err := deploy.AcquireLock(ctx, ctls, up, false, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	_, err = TakeLocks(ctx, first, ctls, deploy.Me("drill run kill-db"), func(string, ...any) {})
	var le *deploy.LockedError
	if !errors.As(err, &le) || le.Holder.Command != "up" {
		t.Fatalf("drill while up runs: %v; want the cluster lock of 'up' named", err)
	}
	if first.dirs[LockDir] {
		t.Error("the refused drill left its drill lock")
	}
	ul.Release(ctx)
}

// A drill lock whose process is gone (it ran on this machine, this boot)
// is taken over, and said so; one whose owner is unreadable (made by hand)
// is not.
func TestStaleDrillLockTakenOver(t *testing.T) {
	ctx := context.Background()
	first, ctls, _ := lockCluster()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := deploy.Me("drill run freeze-node")
	dead.PID = cmd.Process.Pid // exited and reaped
	data, _ := json.Marshal(dead)
	first.dirs[LockDir] = true
	first.files[LockDir+"/owner"] = data
	var notes []string
	say := func(f string, a ...any) { notes = append(notes, f) }
	l, err := TakeLocks(ctx, first, ctls, deploy.Me("drill run kill-db"), say)
	if err != nil {
		t.Fatalf("stale lock: %v", err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "stale") {
		t.Errorf("notes %q, want one saying the stale lock was taken over", notes)
	}
	l.Release(ctx)

	first.dirs[LockDir] = true // mkdir by hand, no owner
	_, err = TakeLocks(ctx, first, ctls, deploy.Me("drill run kill-db"), say)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "no owner recorded") {
		t.Errorf("hand-made lock: %v; want ErrBusy", err)
	}
}
