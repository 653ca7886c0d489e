package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// RunningService is a service that ran on a lab node when a snapshot was
// taken, with what it takes to start it again.
type RunningService struct {
	Node    string       `json:"node"`
	Service node.Service `json:"service"`
	Started time.Time    `json:"started"`
}

// Restarter starts the services a snapshot or rollback stopped. They come
// in the order they had been started across the lab. The default starts
// each again as it was; engine-aware code can do better (Galera must be
// bootstrapped from the node that stopped last).
type Restarter func(ctx context.Context, l *Lab, services []RunningService) error

// SnapshotInfo describes one snapshot.
type SnapshotInfo struct {
	Name     string           `json:"name"`
	Created  time.Time        `json:"created"`
	Services []RunningService `json:"services"`
	Bytes    int64            `json:"bytes"`
}

var snapshotName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (l *Lab) snapshotDir(name string) string {
	return filepath.Join(l.opts.StateDir, "snapshots", name)
}

// DefaultRestarter starts every service again with its recorded
// definition, in the recorded order.
func DefaultRestarter(ctx context.Context, l *Lab, services []RunningService) error {
	for _, s := range services {
		nd, err := l.Node(s.Node)
		if err != nil {
			return err
		}
		if err := nd.Services().Start(ctx, s.Service); err != nil {
			return fmt.Errorf("%s: restarting %s: %w", s.Node, s.Service.Name, err)
		}
		l.opts.Log("%s: %s started again", s.Node, s.Service.Name)
	}
	return nil
}

// running lists every running service of the lab in global start order.
func (l *Lab) running(ctx context.Context) ([]RunningService, error) {
	nodes, err := l.Nodes()
	if err != nil {
		return nil, err
	}
	var out []RunningService
	for _, nd := range nodes {
		recs, err := nd.Supervisor().Definitions(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", nd.Name(), err)
		}
		for _, r := range recs {
			if r.State.Running {
				out = append(out, RunningService{Node: nd.Name(), Service: r.Service, Started: r.State.Started})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// stopAll stops services in the reverse of their start order, so the node
// that started first (e.g. the one that bootstrapped Galera) stops last.
func (l *Lab) stopAll(ctx context.Context, services []RunningService) error {
	for i := len(services) - 1; i >= 0; i-- {
		s := services[i]
		nd, err := l.Node(s.Node)
		if err != nil {
			return err
		}
		if err := nd.Services().Stop(ctx, s.Service.Name, 90*time.Second); err != nil {
			return fmt.Errorf("%s: stopping %s: %w", s.Node, s.Service.Name, err)
		}
		l.opts.Log("%s: %s stopped", s.Node, s.Service.Name)
	}
	return nil
}

// Snapshot captures every node's files with every service stopped, so the
// engines' data on disk is consistent, then starts the services again.
func (l *Lab) Snapshot(ctx context.Context, name string, restart Restarter) (SnapshotInfo, error) {
	if err := l.refuseBooted("snapshot"); err != nil {
		return SnapshotInfo{}, err
	}
	if !snapshotName.MatchString(name) {
		return SnapshotInfo{}, fmt.Errorf("snapshot name %q: use letters, digits, '.', '_' and '-' (at most 64)", name)
	}
	dir := l.snapshotDir(name)
	if _, err := os.Stat(dir); err == nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot %q exists; pick another name", name)
	}
	if restart == nil {
		restart = DefaultRestarter
	}
	svcs, err := l.running(ctx)
	if err != nil {
		return SnapshotInfo{}, err
	}
	start := time.Now()
	if err := l.stopAll(ctx, svcs); err != nil {
		return SnapshotInfo{}, fmt.Errorf("%w\nsome services are stopped; start them with 'hastack up'", err)
	}
	tmp := dir + ".partial"
	_ = os.RemoveAll(tmp)
	copyErr := func() error {
		for _, n := range l.State().Nodes {
			if err := syncTree(ctx, filepath.Join(n.Root, "fs"), filepath.Join(tmp, n.Name)); err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
		}
		info := SnapshotInfo{Name: name, Created: time.Now().UTC(), Services: svcs}
		data, err := json.MarshalIndent(info, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, "snapshot.json"), data, 0o600); err != nil {
			return err
		}
		return os.Rename(tmp, dir)
	}()
	if copyErr != nil {
		_ = os.RemoveAll(tmp)
	}
	// Start what ran even if the copy failed: a failed snapshot must not
	// leave the lab down.
	restartErr := restart(ctx, l, svcs)
	if err := errors.Join(copyErr, restartErr); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot %q: %w", name, err)
	}
	info, err := l.snapshotInfo(name)
	l.opts.Log("snapshot %q taken: %d nodes, %d services stopped and started again, in %s", name, len(l.State().Nodes), len(svcs), time.Since(start).Round(time.Millisecond))
	return info, err
}

// Rollback stops every service, restores every node's files from the
// snapshot and starts the services that ran when it was taken.
func (l *Lab) Rollback(ctx context.Context, name string, restart Restarter) error {
	if err := l.refuseBooted("rollback"); err != nil {
		return err
	}
	info, err := l.snapshotInfo(name)
	if err != nil {
		return err
	}
	if restart == nil {
		restart = DefaultRestarter
	}
	for _, n := range l.State().Nodes {
		if _, err := os.Stat(filepath.Join(l.snapshotDir(name), n.Name)); err != nil {
			return fmt.Errorf("snapshot %q has no copy of node %s (taken from another lab?); nothing was changed", name, n.Name)
		}
	}
	start := time.Now()
	svcs, err := l.running(ctx)
	if err != nil {
		return err
	}
	if err := l.stopAll(ctx, svcs); err != nil {
		return fmt.Errorf("%w\nnothing was restored; run the rollback again", err)
	}
	for _, n := range l.State().Nodes {
		if err := syncTree(ctx, filepath.Join(l.snapshotDir(name), n.Name), filepath.Join(n.Root, "fs")); err != nil {
			return fmt.Errorf("%s: restoring: %w\nthe lab is partly restored; run the rollback again", n.Name, err)
		}
	}
	if err := restart(ctx, l, info.Services); err != nil {
		return fmt.Errorf("rollback to %q: files restored, but: %w", name, err)
	}
	l.opts.Log("rolled back to %q (taken %s): %d services started, in %s", name, info.Created.Local().Format(time.DateTime), len(info.Services), time.Since(start).Round(time.Millisecond))
	return nil
}

// Snapshots lists the lab's snapshots, oldest first.
func (l *Lab) Snapshots() ([]SnapshotInfo, error) {
	ents, err := os.ReadDir(filepath.Join(l.opts.StateDir, "snapshots"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []SnapshotInfo
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".partial") {
			continue
		}
		info, err := l.snapshotInfo(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func (l *Lab) snapshotInfo(name string) (SnapshotInfo, error) {
	dir := l.snapshotDir(name)
	data, err := os.ReadFile(filepath.Join(dir, "snapshot.json"))
	if errors.Is(err, fs.ErrNotExist) || !snapshotName.MatchString(name) {
		var names []string
		if all, err := l.Snapshots(); err == nil {
			for _, s := range all {
				names = append(names, s.Name)
			}
		}
		have := "the lab has none"
		if len(names) > 0 {
			have = "the lab has: " + strings.Join(names, ", ")
		}
		return SnapshotInfo{}, fmt.Errorf("no snapshot %q (%s); nothing was changed", name, have)
	}
	if err != nil {
		return SnapshotInfo{}, err
	}
	var info SnapshotInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot %q: %w", name, err)
	}
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				info.Bytes += fi.Size()
			}
		}
		return nil
	})
	return info, nil
}

// syncTree makes dst an exact copy of src (owners, modes, sparse files),
// keeping dst's folders themselves in place: a lab node's folders are
// bind-mounted, so they must be emptied and refilled, never replaced.
// The supervisor's socket is not part of a node's state. Every file is
// copied (--ignore-times): rsync's size-and-mtime shortcut would keep a file
// rewritten within the same second with the same size.
func syncTree(ctx context.Context, src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "rsync", "-aHS", "--inplace", "--ignore-times", "--delete", "--exclude=/run/hastack/", src+"/", dst+"/").CombinedOutput()
	if err != nil {
		return fmt.Errorf("rsync %s -> %s: %v: %s", src, dst, err, strings.TrimSpace(string(out)))
	}
	return nil
}
