package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/node"
)

// LockDir is the drill lock on the first controller. A folder, because
// mkdir is atomic on every host; in /run, because a reboot ends any drill.
const LockDir = "/run/hastack/drill.lock"

// The drill lock and the cluster lock (deploy.LockPath, the lock of 'up'
// and 'recover') are two locks for two questions:
//   - the drill lock says "a drill is running": a second drill is refused
//     with who runs it and since when;
//   - the cluster lock says "someone is changing the cluster": a drill
//     holds it for its whole run, so that an operator's 'up' in the middle
//     (which would repair the fault early and falsify the figures) is
//     refused with the drill named, and a drill does not start while an
//     'up' runs. The 'up' a drill runs itself (the heal of kill-*, power-
//     loss, rolling-restart) works under the lock the drill holds and does
//     not take it again: taking it again would find the drill's own lock
//     and refuse.
// The drill lock is taken first and given back last.

// Locks are the two locks a drill holds; Release gives both back.
type Locks struct {
	Cluster      *deploy.Lock
	releaseDrill func()
}

// Release gives back the cluster lock, then the drill lock.
func (l *Locks) Release(ctx context.Context) {
	if l == nil {
		return
	}
	l.Cluster.Release(ctx)
	if l.releaseDrill != nil {
		l.releaseDrill()
	}
}

// TakeLocks takes the drill lock on first and the cluster lock on ctls,
// for a drill run by me. Another drill is ErrBusy; another hastack holding
// the cluster lock is a *deploy.LockedError; either way nothing is held.
// Notes (a stale drill lock taken over) go to say.
func TakeLocks(ctx context.Context, first node.Node, ctls []node.Node, me deploy.Holder, say func(format string, a ...any)) (*Locks, error) {
	rel, err := lockAt(ctx, first, LockDir, me, say)
	if err != nil {
		return nil, err
	}
	cl, err := deploy.AcquireLock(ctx, ctls, me, false, say)
	if err != nil {
		rel()
		return nil, err
	}
	return &Locks{Cluster: cl, releaseDrill: rel}, nil
}

// Lock takes only the drill lock on n (the first controller) through the
// node interface, so it works on lab nodes and SSH hosts alike. The
// returned function releases it. A lock held by another drill is ErrBusy,
// with its owner.
func Lock(ctx context.Context, n node.Node, me deploy.Holder, say func(format string, a ...any)) (func(), error) {
	return lockAt(ctx, n, LockDir, me, say)
}

func lockAt(ctx context.Context, n node.Node, dir string, me deploy.Holder, say func(format string, a ...any)) (func(), error) {
	owner := dir + "/owner"
	if _, err := n.Run(ctx, node.Cmd{Argv: []string{"mkdir", "-p", path.Dir(dir)}}); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		_, err := n.Run(ctx, node.Cmd{Argv: []string{"mkdir", dir}})
		if err == nil {
			break
		}
		var ce *node.CommandError
		if !errors.As(err, &ce) {
			return nil, err
		}
		data, _ := n.ReadFile(ctx, owner)
		var h deploy.Holder
		if json.Unmarshal(data, &h) == nil && h.PID > 0 && h.Gone() && attempt == 0 {
			// Its process is gone (it ran on this machine, this boot):
			// a drill killed hard. Taken over, and said so.
			say("%s: the drill lock %s of %s is stale (that process is gone): taken over", n.Name(), dir, h)
			if _, err := n.Run(ctx, node.Cmd{Argv: []string{"rm", "-rf", dir}}); err != nil {
				return nil, err
			}
			continue
		}
		who := strings.TrimSpace(string(data))
		if h.PID > 0 {
			who = h.String()
		} else if who == "" {
			who = "no owner recorded"
		}
		return nil, fmt.Errorf("%w: %s holds %s on %s; if that drill is gone for good, remove the folder on %s", ErrBusy, who, dir, n.Name(), n.Name())
	}
	data, err := json.Marshal(me)
	if err != nil {
		return nil, err
	}
	if err := n.WriteFile(ctx, owner, append(data, '\n'), 0o644, ""); err != nil {
		_, _ = n.Run(ctx, node.Cmd{Argv: []string{"rm", "-rf", dir}})
		return nil, err
	}
	return func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		// Only our own: a lock taken over meanwhile stays.
		if d, err := n.ReadFile(c, owner); err == nil {
			var h deploy.Holder
			if json.Unmarshal(d, &h) == nil && h.Token != me.Token {
				return
			}
		}
		_, _ = n.Run(c, node.Cmd{Argv: []string{"rm", "-rf", dir}})
	}, nil
}
