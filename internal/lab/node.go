package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/supervise"
)

// Node returns the node interface of a lab node: what deploy code, probes
// and drills use, exactly as for a real host.
func (l *Lab) Node(name string) (*Node, error) {
	n, err := l.nodeState(name)
	if err != nil {
		return nil, err
	}
	if n.Booted != nil {
		pid, err := machineInit(n.Booted)
		if err != nil {
			return nil, fmt.Errorf("lab node %s is not running: %w", name, err)
		}
		st, err := procStart(pid)
		if err != nil {
			return nil, fmt.Errorf("lab node %s: %w", name, err)
		}
		n.PID, n.Start = pid, st
		return &Node{st: n}, nil
	}
	if !alive(n.PID, n.Start) {
		return nil, fmt.Errorf("lab node %s is not running (its init, pid %d, is gone); run 'hastack lab down' and 'hastack lab up'", name, n.PID)
	}
	return &Node{st: n}, nil
}

// Nodes returns every lab node, in lab order.
func (l *Lab) Nodes() ([]*Node, error) {
	var out []*Node
	var errs []error
	for _, n := range l.State().Nodes {
		nd, err := l.Node(n.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, nd)
	}
	return out, errors.Join(errs...)
}

// Node is one lab node. It implements node.Node.
type Node struct {
	st NodeState
}

var _ node.Node = (*Node)(nil)

// Name is the node's name.
func (n *Node) Name() string { return n.st.Name }

// Address is the node's management address.
func (n *Node) Address() string { return n.st.Address }

// Role is the node's role in the spec (or the lab's stand-in role).
func (n *Node) Role() string { return n.st.Role }

// PID is the host PID of the node's init.
func (n *Node) PID() int { return n.st.PID }

// NetNS is the name of the node's network namespace under /run/netns.
func (n *Node) NetNS() string { return n.st.NetNS }

// nodeEnv is the environment of commands run on a lab node: what a root
// login shell would have, nothing from the caller.
var nodeEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root", "TERM=dumb"}

// Command returns an exec.Cmd that runs argv inside the node (all of its
// namespaces), as user when not empty, in dir when not empty.
func (n *Node) Command(ctx context.Context, argv []string, usr, dir string, env []string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command")
	}
	args := []string{"-t", strconv.Itoa(n.st.PID), "-m", "-u", "-i", "-n", "-p"}
	if dir == "" {
		dir = "/"
	}
	if n.st.Booted != nil {
		// A booted host has a root of its own. nsenter opens the folder
		// before it enters the namespaces: name it through the host's
		// view of that root.
		args = append(args, "-r", "--wd="+filepath.Join(fmt.Sprintf("/proc/%d/root", n.st.PID), dir))
	} else {
		args = append(args, "--wd="+dir)
	}
	args = append(args, "--")
	e := append([]string{}, nodeEnv...)
	if usr != "" && usr != "root" {
		u, err := user.Lookup(usr)
		if err != nil {
			return nil, fmt.Errorf("%s: user %q: %w", n.st.Name, usr, err)
		}
		args = append(args, "setpriv", "--reuid="+u.Uid, "--regid="+u.Gid, "--init-groups", "--")
		e = append(e, "HOME="+u.HomeDir, "USER="+u.Username, "LOGNAME="+u.Username)
	}
	args = append(args, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = append(e, env...)
	return cmd, nil
}

// CommandTimeout is the deadline of a command whose context has none, as
// over SSH: a command on a frozen node must not hold hastack for ever.
const CommandTimeout = 15 * time.Minute

// Run runs a command inside the node. A command that misses its deadline
// on a frozen node (its processes stopped) says so.
func (n *Node) Run(ctx context.Context, c node.Cmd) (node.Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, CommandTimeout)
		defer cancel()
	}
	res, err := n.run(ctx, c)
	if err != nil && ctx.Err() != nil {
		if note := n.frozenNote(); note != "" {
			err = fmt.Errorf("%w\n%s", err, note)
		}
	}
	return res, err
}

// frozenNote explains a node whose processes are stopped (SIGSTOP, as
// 'lab fault freeze' leaves it), "" otherwise.
func (n *Node) frozenNote() string {
	pids, err := nodePIDs(n.st.PID)
	if err != nil {
		return ""
	}
	stopped, total := 0, 0
	for _, pid := range pids {
		if pid == n.st.PID {
			continue
		}
		total++
		if s := procState(pid); s == "T" || s == "t" {
			stopped++
		}
	}
	if stopped == 0 {
		return ""
	}
	return fmt.Sprintf("%s is frozen: %d of its %d processes are stopped (SIGSTOP), so it answers nothing; thaw it with 'hastack lab fault thaw %s'", n.st.Name, stopped, total, n.st.Name)
}

func (n *Node) run(ctx context.Context, c node.Cmd) (node.Result, error) {
	cmd, err := n.Command(ctx, c.Argv, c.User, c.Dir, c.Env)
	if err != nil {
		return node.Result{}, err
	}
	// When ctx ends, kill the whole process group, not just nsenter: the
	// command it forked into the node (and anything that inherited the
	// output pipes) would otherwise keep Run waiting past its deadline,
	// e.g. a client stuck on a frozen node. WaitDelay bounds what remains.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdin = c.Stdin
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	if c.Stderr != nil {
		cmd.Stderr = c.Stderr
	}
	err = cmd.Run()
	res := node.Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitCode()
		out := strings.TrimSpace(stderr.String())
		if out == "" {
			out = strings.TrimSpace(stdout.String())
		}
		if ctx.Err() != nil {
			out = fmt.Sprintf("%v; %s", ctx.Err(), out)
		}
		return res, &node.CommandError{Node: n.st.Name, Argv: c.Argv, ExitCode: res.ExitCode, Output: out}
	default:
		return res, fmt.Errorf("%s: %s: %w", n.st.Name, strings.Join(c.Argv, " "), err)
	}
}

// hostPath is where path inside the node is seen from the host: through
// the init's root, which resolves in the node's mount namespace.
func (n *Node) hostPath(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%s: path %q is not absolute", n.st.Name, p)
	}
	return filepath.Join(fmt.Sprintf("/proc/%d/root", n.st.PID), filepath.Clean(p)), nil
}

// WriteFile writes a file inside the node atomically.
func (n *Node) WriteFile(ctx context.Context, p string, data []byte, mode fs.FileMode, owner string) error {
	hp, err := n.hostPath(p)
	if err != nil {
		return err
	}
	uid, gid := 0, 0
	if owner != "" && owner != "root" {
		uname, gname, _ := strings.Cut(owner, ":")
		u, err := user.Lookup(uname)
		if err != nil {
			return fmt.Errorf("%s: writing %s: owner %q: %w", n.st.Name, p, owner, err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		if gname != "" {
			g, err := user.LookupGroup(gname)
			if err != nil {
				return fmt.Errorf("%s: writing %s: group %q: %w", n.st.Name, p, gname, err)
			}
			gid, _ = strconv.Atoi(g.Gid)
		}
	}
	if slices.Contains(fileBinds(), filepath.Clean(p)) {
		// The lab bind-mounts this file into the node. Its folder is the
		// host's: a temporary file and a rename there would replace the
		// host's file, not the node's. Write the node's copy in place.
		if err := writeInPlace(hp, data, mode, uid, gid); err != nil {
			return fmt.Errorf("%s: writing %s: %w", n.st.Name, p, err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(hp), 0o755); err != nil {
		return fmt.Errorf("%s: writing %s: %w", n.st.Name, p, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(hp), "."+filepath.Base(hp)+".hastack-*")
	if err != nil {
		return fmt.Errorf("%s: writing %s: %w", n.st.Name, p, err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(mode.Perm())
	if err == nil {
		err = tmp.Chown(uid, gid)
	}
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), hp)
	}
	if err != nil {
		return fmt.Errorf("%s: writing %s: %w", n.st.Name, p, err)
	}
	return nil
}

func writeInPlace(p string, data []byte, mode fs.FileMode, uid, gid int) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode.Perm())
	}
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadFile reads a file inside the node.
func (n *Node) ReadFile(ctx context.Context, p string) ([]byte, error) {
	hp, err := n.hostPath(p)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(hp)
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", n.st.Name, p, err)
	}
	return data, nil
}

// Services is the node's supervisor.
func (n *Node) Services() node.Supervisor { return n.Supervisor() }

// Supervisor is the node's supervisor client, with the lab-only extras
// (definitions, restart) that snapshots use.
func (n *Node) Supervisor() *supervise.Client {
	return supervise.Dial(fmt.Sprintf("/proc/%d/root%s", n.st.PID, SupervisorSocket))
}
