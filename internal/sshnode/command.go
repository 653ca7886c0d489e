package sshnode

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hastack/hastack/internal/node"
)

// baseEnv is the environment every command gets, whatever the login's
// shell set up: the PATH a root login has on Debian (sudo's secure_path
// is the same), and a locale whose messages hastack parses.
var baseEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}

// Quote quotes s for a POSIX shell: as is when it has nothing the shell
// would interpret, otherwise in single quotes (inside which only the single
// quote itself needs care).
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// CommandLine is the line sshd hands the login shell for c: sudo when the
// login is not root, runuser for another user, env for the environment and
// folder, then argv, every word quoted. The shell execs it, so signals and
// the exit status are the command's own.
func CommandLine(sudo bool, c node.Cmd) (string, error) {
	if len(c.Argv) == 0 {
		return "", errors.New("no command")
	}
	// env would take a first word with '=' for a variable.
	if strings.Contains(c.Argv[0], "=") {
		return "", fmt.Errorf("command %q: a program name cannot contain '='", c.Argv[0])
	}
	var w []string
	if sudo {
		// -n: never prompt; a password prompt would hang with no one to
		// answer it. It fails at once instead, and the caller says why.
		w = append(w, "sudo", "-n", "--")
	}
	if c.User != "" && c.User != "root" {
		// runuser (util-linux) sets HOME, USER and LOGNAME as the lab's
		// setpriv does, and needs root, which the words before give.
		w = append(w, "runuser", "-u", c.User, "--")
	}
	w = append(w, "env")
	if c.Dir != "" {
		w = append(w, "-C", c.Dir)
	}
	w = append(w, baseEnv...)
	for _, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return "", fmt.Errorf("environment entry %q is not KEY=VALUE", kv)
		}
		w = append(w, kv)
	}
	w = append(w, c.Argv...)
	q := make([]string, len(w))
	for i, s := range w {
		q[i] = Quote(s)
	}
	return "exec " + strings.Join(q, " "), nil
}

// Run runs a command on the host. A command that exits non-zero returns a
// *node.CommandError; one that never ran (no connection, sudo refused)
// returns an error naming the host and why.
func (n *Node) Run(ctx context.Context, c node.Cmd) (node.Result, error) {
	line, err := CommandLine(n.cfg.sudo(), c)
	if err != nil {
		return node.Result{}, fmt.Errorf("%s: %w", n.cfg.Name, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.pool.opts.CommandTimeout)
		defer cancel()
	}
	res, err := n.run(ctx, hostDeadline(ctx, line), c.Stdin, c.Stdout, c.Stderr)
	if err != nil {
		return res, err
	}
	if res.ExitCode == 0 {
		return res, nil
	}
	if e := n.sudoErr(res.ExitCode, string(res.Stderr)); e != nil {
		return res, e
	}
	out := strings.TrimSpace(string(res.Stderr))
	if out == "" {
		out = strings.TrimSpace(string(res.Stdout))
	}
	if ctx.Err() != nil {
		out = fmt.Sprintf("%v; %s", ctx.Err(), out)
	}
	return res, &node.CommandError{Node: n.cfg.Name, Argv: c.Argv, ExitCode: res.ExitCode, Output: out}
}

// run runs a command line on the node's connection within the host's and
// the pool's command limits. A session that cannot be opened means the
// connection broke before the command was sent: that, and only that, is
// tried once more on a new connection. A session the host refused on a
// working connection (sshd's MaxSessions) is asked for again on the same
// connection until the context ends: closing the connection would kill
// every other command running on it.
func (n *Node) run(ctx context.Context, line string, stdin io.Reader, stdout, stderr io.Writer) (node.Result, error) {
	reconnected := false
	for attempt := 1; ; attempt++ {
		client, release, err := n.acquire(ctx)
		if err != nil {
			return node.Result{}, err
		}
		res, err := n.withSlots(ctx, func() (node.Result, error) {
			return n.exec(ctx, client, line, stdin, stdout, stderr)
		})
		release()
		var se *sessionError
		if errors.As(err, &se) && ctx.Err() == nil {
			if refusedSession(err) {
				// sshd said no to one more session on a connection that
				// works ("no more sessions": it frees closed sessions
				// late). Every other command on it is fine: wait a
				// little and ask again, on the same connection.
				if werr := sleepCtx(ctx, sessionRetryDelay(attempt)); werr != nil {
					return res, err
				}
				continue
			}
			if !reconnected {
				n.dropClient(client)
				reconnected = true
				continue
			}
		}
		return res, err
	}
}

// withSlots runs fn holding a slot of this host's sessions and one of the
// pool's commands.
func (n *Node) withSlots(ctx context.Context, fn func() (node.Result, error)) (node.Result, error) {
	for _, sem := range []chan struct{}{n.sessions, n.pool.commands} {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		case <-ctx.Done():
			return node.Result{}, fmt.Errorf("%s: waiting for a free session: %w", n.cfg.Name, ctx.Err())
		}
	}
	return fn()
}

// dropClient closes a connection found broken, so the next user makes a
// new one.
func (n *Node) dropClient(client *ssh.Client) {
	n.mu.Lock()
	if n.conn != nil && n.conn.client == client {
		n.conn = nil
	}
	n.mu.Unlock()
	client.Close()
}

// sessionError is a session that could not be opened: the command was
// never sent.
type sessionError struct{ err error }

func (e *sessionError) Error() string { return e.err.Error() }
func (e *sessionError) Unwrap() error { return e.err }

// exec runs one command line in a new session and waits for it. The
// context's end asks the remote process to stop (SIGTERM, which sudo passes
// on) and closes the session; exec returns then without waiting for the
// host.
func (n *Node) exec(ctx context.Context, client *ssh.Client, line string, stdin io.Reader, stdout, stderr io.Writer) (node.Result, error) {
	// Opening a session waits for the host's answer, which a dead host
	// never sends: wait for it no longer than the context allows.
	type opened struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := client.NewSession()
		ch <- opened{s, err}
	}()
	var sess *ssh.Session
	select {
	case o := <-ch:
		if o.err != nil {
			return node.Result{}, &sessionError{fmt.Errorf("%s: %s: opening a session: %w", n.cfg.Name, n.cfg.who(), o.err)}
		}
		sess = o.s
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.s != nil {
				o.s.Close()
			}
		}()
		return node.Result{}, fmt.Errorf("%s: %s: opening a session: %w", n.cfg.Name, n.cfg.who(), ctx.Err())
	}
	defer sess.Close()
	var outBuf, errBuf bytes.Buffer
	sess.Stdin = stdin
	sess.Stdout, sess.Stderr = &outBuf, &errBuf
	if stdout != nil {
		sess.Stdout = stdout
	}
	if stderr != nil {
		sess.Stderr = stderr
	}
	done := make(chan error, 1)
	if err := sess.Start(line); err != nil {
		return node.Result{}, fmt.Errorf("%s: %s: starting the command: %w", n.cfg.Name, n.cfg.who(), err)
	}
	go func() { done <- sess.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		sess.Signal(ssh.SIGTERM)
		sess.Close()
		// The output is read only once the session's copiers are done
		// with it; a host that does not answer leaves none.
		select {
		case <-done:
			return node.Result{Stdout: outBuf.Bytes(), Stderr: errBuf.Bytes(), ExitCode: -1}, nil
		case <-time.After(2 * time.Second):
			return node.Result{ExitCode: -1}, nil
		}
	}
	res := node.Result{Stdout: outBuf.Bytes(), Stderr: errBuf.Bytes()}
	var ee *ssh.ExitError
	var em *ssh.ExitMissingError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &ee):
		res.ExitCode = ee.ExitStatus()
		if ee.Signal() != "" {
			res.ExitCode = -1
		}
		return res, nil
	case errors.As(err, &em):
		return res, fmt.Errorf("%s: %s: the connection was lost while the command ran; it may or may not have finished", n.cfg.Name, n.cfg.who())
	}
	return res, fmt.Errorf("%s: %s: %w", n.cfg.Name, n.cfg.who(), err)
}

// writeScript writes stdin to $1 atomically with mode $2 and owner $3: a
// temporary file in the same folder, synced, then renamed over the target.
// A target that is itself a mount point (a file bind-mounted into a
// container or a lab node, /etc/hosts say) cannot be renamed over: it is
// rewritten in place instead.
const writeScript = `set -e
d=$(dirname -- "$1")
mkdir -p -- "$d"
t=$(mktemp -- "$d/.hastack-XXXXXXXX")
trap 'rm -f -- "$t"' EXIT
cat >"$t"
chmod -- "$2" "$t"
chown -- "$3" "$t"
sync -- "$t"
if mountpoint -q -- "$1"; then
	cat -- "$t" >"$1"
	chmod -- "$2" "$1"
	chown -- "$3" "$1"
else
	mv -f -- "$t" "$1"
fi`

// WriteFile writes data to p atomically, creating its folder, with mode and
// owner ("user" takes the user's own group, "user:group" both, "" root).
func (n *Node) WriteFile(ctx context.Context, p string, data []byte, mode fs.FileMode, owner string) error {
	if !path.IsAbs(p) {
		return fmt.Errorf("%s: path %q is not absolute", n.cfg.Name, p)
	}
	_, err := n.Run(ctx, node.Cmd{
		Argv:  []string{"sh", "-c", writeScript, "sh", path.Clean(p), fmt.Sprintf("%o", mode.Perm()), chownSpec(owner)},
		Stdin: bytes.NewReader(data),
	})
	if err != nil {
		return fmt.Errorf("%s: writing %s: %w", n.cfg.Name, p, scriptErr(err))
	}
	return nil
}

// chownSpec turns an owner as node.Node takes it into chown's argument.
func chownSpec(owner string) string {
	switch {
	case owner == "" || owner == "root":
		return "0:0"
	case strings.Contains(owner, ":"):
		return owner
	}
	return owner + ":" // the user's login group
}

// scriptErr shortens the error of a helper script: the script's text says
// nothing to the reader, its output does.
func scriptErr(err error) error {
	var ce *node.CommandError
	if errors.As(err, &ce) {
		return fmt.Errorf("exit %d: %s", ce.ExitCode, ce.Output)
	}
	return err
}

// missingExit is the exit status of readScript for a file that is not
// there: distinct from cat's 1, so a missing file is told from an
// unreadable one without reading messages.
const missingExit = 66

const readScript = `test -e "$1" || exit 66
exec cat -- "$1"`

// ReadFile reads a file; a missing one is an error matching fs.ErrNotExist.
func (n *Node) ReadFile(ctx context.Context, p string) ([]byte, error) {
	if !path.IsAbs(p) {
		return nil, fmt.Errorf("%s: path %q is not absolute", n.cfg.Name, p)
	}
	res, err := n.Run(ctx, node.Cmd{Argv: []string{"sh", "-c", readScript, "sh", path.Clean(p)}})
	var ce *node.CommandError
	if errors.As(err, &ce) && ce.ExitCode == missingExit {
		return nil, fmt.Errorf("%s: reading %s: %w", n.cfg.Name, p, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", n.cfg.Name, p, scriptErr(err))
	}
	return res.Stdout, nil
}
