package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// LockPath is the cluster lock on each controller. Every controller holds
// a copy, so that the lock is seen by any machine that runs hastack
// against the cluster, lab or SSH alike, and survives the loss of one
// controller.
const LockPath = "/var/lib/hastack/cluster.lock"

// Holder says who holds the cluster lock.
type Holder struct {
	Command string    `json:"command"` // e.g. "up"
	User    string    `json:"user"`
	Host    string    `json:"host"`   // the machine hastack runs on
	BootID  string    `json:"bootId"` // of that machine, to tell a dead holder
	PID     int       `json:"pid"`
	Since   time.Time `json:"since"`
	Token   string    `json:"token"` // unique per acquisition
}

func (h Holder) String() string {
	return fmt.Sprintf("'hastack %s' (pid %d on %s, user %s) since %s (%s ago)", h.Command, h.PID, h.Host, h.User, h.Since.Format(time.RFC3339), time.Since(h.Since).Round(time.Second))
}

// Me is a holder for this process running command.
func Me(command string) Holder {
	h := Holder{Command: command, PID: os.Getpid(), Since: time.Now().UTC().Truncate(time.Second)}
	h.Host, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		h.User = u.Username
	}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		h.BootID = strings.TrimSpace(string(b))
	}
	h.Token = fmt.Sprintf("%s-%d-%d", h.Host, h.PID, time.Now().UnixNano())
	return h
}

// Gone reports whether the holder ran on this machine and its process no
// longer exists: the lock is stale.
func (h Holder) Gone() bool {
	me := Me("")
	if h.BootID == "" || h.BootID != me.BootID || h.Host != me.Host {
		return false
	}
	err := syscall.Kill(h.PID, 0)
	return errors.Is(err, syscall.ESRCH)
}

// Lock is the cluster lock, held on every controller that answered.
type Lock struct {
	holder Holder
	nodes  []node.Node
}

// LockedError says the cluster is locked by someone else.
type LockedError struct {
	Holder Holder
	On     []string
}

func (e *LockedError) Error() string {
	msg := fmt.Sprintf("the cluster is locked by %s (lock %s on %s): another hastack works on it; wait for it to finish", e.Holder, LockPath, strings.Join(e.On, ", "))
	if e.Holder.Gone() {
		msg += fmt.Sprintf(". That process is gone (it ran on this machine): the lock is stale; run again with --break-lock to remove it")
	} else {
		msg += ", or, if it is gone for good (its machine failed), run again with --break-lock"
	}
	return msg
}

// AcquireLock takes the cluster lock on every controller that answers
// (at least one must). When one holds another's lock, nothing is taken and
// a *LockedError names the holder; with breakLock, another's lock is
// removed first and the removal reported through say.
func AcquireLock(ctx context.Context, ctls []node.Node, me Holder, breakLock bool, say func(format string, a ...any)) (*Lock, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	data, err := json.Marshal(me)
	if err != nil {
		return nil, err
	}
	type answer struct {
		got     bool
		holder  *Holder
		err     error
		removed *Holder // another's lock broken on request
	}
	answers := make([]answer, len(ctls))
	var wg sync.WaitGroup
	for i, n := range ctls {
		wg.Go(func() {
			a := &answers[i]
			if breakLock {
				if h, err := readLock(ctx, n); err == nil && h != nil && h.Token != me.Token {
					if _, err := n.Run(ctx, node.Cmd{Argv: []string{"rm", "-f", LockPath}}); err != nil {
						a.err = err
						return
					}
					a.removed = h
				}
			}
			// set -C: the shell creates the file with O_EXCL, so of two
			// hastacks racing for a node exactly one gets it.
			_, err := n.Run(ctx, node.Cmd{Argv: []string{"sh", "-c", "mkdir -p /var/lib/hastack && set -C && cat > " + LockPath}, Stdin: bytes.NewReader(data)})
			if err == nil {
				a.got = true
				return
			}
			h, rerr := readLock(ctx, n)
			switch {
			case rerr == nil && h != nil:
				a.holder = h
			case rerr != nil:
				a.err = rerr
			default:
				a.err = err
			}
		})
	}
	wg.Wait()
	for i, a := range answers {
		if a.removed != nil {
			say("%s: removed the lock of %s", ctls[i].Name(), a.removed)
		}
	}
	l := &Lock{holder: me}
	var other *Holder
	var on, silent []string
	for i, a := range answers {
		switch {
		case a.got:
			l.nodes = append(l.nodes, ctls[i])
		case a.holder != nil:
			if other == nil || a.holder.Since.Before(other.Since) {
				other = a.holder
			}
			on = append(on, ctls[i].Name())
		default:
			silent = append(silent, fmt.Sprintf("%s (%v)", ctls[i].Name(), a.err))
		}
	}
	if other != nil || len(l.nodes) == 0 {
		l.Release(context.WithoutCancel(ctx))
		if other != nil {
			sort.Strings(on)
			return nil, &LockedError{Holder: *other, On: on}
		}
		return nil, fmt.Errorf("no controller answered to take the cluster lock: %s", strings.Join(silent, "; "))
	}
	return l, nil
}

// readLock returns the holder recorded on n, nil when there is no lock.
func readLock(ctx context.Context, n node.Node) (*Holder, error) {
	data, err := n.ReadFile(ctx, LockPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var h Holder
	if err := json.Unmarshal(data, &h); err != nil {
		return &Holder{Command: "(unreadable lock: " + err.Error() + ")"}, nil
	}
	return &h, nil
}

// Release removes the lock where this process holds it, and only there.
func (l *Lock) Release(ctx context.Context) {
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, n := range l.nodes {
		wg.Go(func() {
			if h, err := readLock(ctx, n); err == nil && h != nil && h.Token == l.holder.Token {
				_, _ = n.Run(ctx, node.Cmd{Argv: []string{"rm", "-f", LockPath}})
			}
		})
	}
	wg.Wait()
	l.nodes = nil
}
