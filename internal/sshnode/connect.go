package sshnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// ConnectError is a host that could not be reached or would not let
// hastack in. Final is true when trying again cannot help (host key,
// authentication, sudo, a key file): the error says what to fix.
type ConnectError struct {
	Node  string
	Who   string // user@host:port
	Final bool
	Err   error
}

func (e *ConnectError) Error() string { return fmt.Sprintf("%s: %s: %v", e.Node, e.Who, e.Err) }

func (e *ConnectError) Unwrap() error { return e.Err }

// connect makes c's connection: up to ConnectAttempts attempts for failures
// that may pass, each bounded by ConnectTimeout, with a pause between them.
// It runs apart from any caller and fills c.
func (n *Node) connect(c *connection) {
	o := n.pool.opts
	defer close(c.ready)
	var err error
	for attempt := 1; ; attempt++ {
		var client *ssh.Client
		client, err = n.dialOnce()
		if err == nil {
			if err = n.checkSudo(client); err != nil {
				client.Close()
				break
			}
			c.client = client
			go n.watch(c)
			return
		}
		var ce *ConnectError
		if errors.As(err, &ce) && ce.Final || attempt >= o.ConnectAttempts {
			break
		}
		n.mu.Lock()
		c.last = err
		n.mu.Unlock()
		time.Sleep(time.Duration(attempt) * time.Second)
	}
	var ce *ConnectError
	if !errors.As(err, &ce) {
		err = &ConnectError{Node: n.cfg.Name, Who: n.cfg.who(), Err: err}
	} else if !ce.Final && o.ConnectAttempts > 1 {
		ce.Err = fmt.Errorf("cannot connect after %d attempts: %w", o.ConnectAttempts, ce.Err)
	}
	c.err = err
}

// dialOnce is one connection attempt: TCP, handshake with the host key
// checked, authentication. A slot of MaxConnecting is held throughout.
func (n *Node) dialOnce() (*ssh.Client, error) {
	o := n.pool.opts
	ctx, cancel := context.WithTimeout(context.Background(), o.ConnectTimeout)
	defer cancel()
	select {
	case n.pool.connecting <- struct{}{}:
		defer func() { <-n.pool.connecting }()
	case <-ctx.Done():
		return nil, n.connErr(false, fmt.Errorf("waited %s for a free connection slot (at most %d hosts connect at once)", o.ConnectTimeout, o.MaxConnecting))
	}
	auth, closeAuth, err := n.authMethods()
	if err != nil {
		return nil, err
	}
	defer closeAuth()
	hostKey, algos, err := n.pool.known.callback(n.cfg)
	if err != nil {
		return nil, n.connErr(true, err)
	}
	addr := n.cfg.addr()
	var conn net.Conn
	if o.dial != nil {
		conn, err = o.dial(ctx, addr)
	} else {
		d := net.Dialer{KeepAlive: 30 * time.Second}
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, n.connErr(false, err)
	}
	// The handshake and authentication share the attempt's deadline.
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:              n.cfg.User,
		Auth:              auth,
		HostKeyCallback:   hostKey,
		HostKeyAlgorithms: algos,
		ClientVersion:     "SSH-2.0-hastack",
	})
	if err != nil {
		conn.Close()
		return nil, n.handshakeErr(err)
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(sc, chans, reqs), nil
}

func (n *Node) connErr(final bool, err error) *ConnectError {
	return &ConnectError{Node: n.cfg.Name, Who: n.cfg.who(), Final: final, Err: err}
}

// handshakeErr says what a failed handshake means for the operator.
func (n *Node) handshakeErr(err error) error {
	var hk *HostKeyError
	switch {
	case errors.As(err, &hk):
		return n.connErr(true, hk)
	case strings.Contains(err.Error(), "unable to authenticate"):
		return n.connErr(true, fmt.Errorf("the host refused the key (%s): either the user %q is wrong, or the key is not in its authorized_keys on the host", n.keyDescription(), n.cfg.User))
	case strings.Contains(err.Error(), "no common algorithm for host key"):
		return n.connErr(true, fmt.Errorf("the host offers none of the key types %s records for it (%v): it was reinstalled or is not the host you know; check, then remove the old entry with 'ssh-keygen -R %s -f %s'", n.cfg.KnownHosts, err, knownHostsName(n.cfg), n.cfg.KnownHosts))
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n.connErr(false, fmt.Errorf("no SSH handshake within %s", n.pool.opts.ConnectTimeout))
	}
	// A connection cut during the handshake (sshd restarting, MaxStartups)
	// may pass; anything else the server said will not.
	return n.connErr(!retryable(err), fmt.Errorf("ssh handshake: %w", err))
}

// retryable reports whether a failure to connect may pass on its own.
func retryable(err error) bool {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return true
	case errors.As(err, &ne) && ne.Timeout():
		return true
	}
	return false
}

// authMethods loads the identity file and reaches the agent, as the config
// asks. closeAuth ends the agent connection once authentication is over.
func (n *Node) authMethods() (methods []ssh.AuthMethod, closeAuth func(), err error) {
	closeAuth = func() {}
	if f := n.cfg.IdentityFile; f != "" {
		s, err := loadKey(f)
		if err != nil {
			return nil, nil, n.connErr(true, err)
		}
		methods = append(methods, ssh.PublicKeys(s))
	}
	if n.cfg.Agent {
		sock := n.cfg.AgentSocket
		if sock == "" {
			sock = os.Getenv("SSH_AUTH_SOCK")
		}
		if sock == "" {
			return nil, nil, n.connErr(true, errors.New("the spec says agent: true, but SSH_AUTH_SOCK is not set: start ssh-agent and add the key (ssh-add), or give identityFile"))
		}
		conn, err := net.Dial("unix", sock)
		if err != nil {
			return nil, nil, n.connErr(true, fmt.Errorf("reaching ssh-agent at %s: %w", sock, err))
		}
		closeAuth = func() { conn.Close() }
		methods = append(methods, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
	}
	return methods, closeAuth, nil
}

// loadKey reads a private key file.
func loadKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pm):
		return nil, fmt.Errorf("identity file %s is protected by a passphrase: add it to ssh-agent (ssh-add %s) and set agent: true", path, path)
	case err != nil:
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return s, nil
}

// keyDescription names the keys offered, for an authentication failure.
func (n *Node) keyDescription() string {
	var parts []string
	if f := n.cfg.IdentityFile; f != "" {
		if s, err := loadKey(f); err == nil {
			parts = append(parts, fmt.Sprintf("%s %s from %s", s.PublicKey().Type(), ssh.FingerprintSHA256(s.PublicKey()), f))
		}
	}
	if n.cfg.Agent {
		parts = append(parts, "the agent's keys")
	}
	return "offered " + strings.Join(parts, " and ")
}

// checkSudo makes sure a user other than root may use sudo without a
// password, before anything runs: a host where it may not is refused at
// connect, with nothing changed on it.
func (n *Node) checkSudo(client *ssh.Client) error {
	if !n.cfg.sudo() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.pool.opts.ConnectTimeout)
	defer cancel()
	res, err := n.exec(ctx, client, "sudo -n true", nil, nil, nil)
	if err != nil {
		return n.connErr(false, err)
	}
	if res.ExitCode != 0 {
		if e := n.sudoErr(res.ExitCode, string(res.Stderr)); e != nil {
			return e
		}
		return n.connErr(true, fmt.Errorf("'sudo -n true' failed (exit %d): %s", res.ExitCode, strings.TrimSpace(string(res.Stderr))))
	}
	return nil
}

// sudoErr recognises sudo refusing to run a command, from its exit code and
// message (the C locale's, as sshd passes no locale to sudo's messages we
// match; a translated message still fails, only less clearly).
func (n *Node) sudoErr(code int, stderr string) error {
	if !n.cfg.sudo() {
		return nil
	}
	u := n.cfg.User
	// sudo's own complaint is one line of its own; sshd may have written
	// others before it (a missing home folder, say).
	var said string
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "sudo:") || strings.Contains(line, "is not in the sudoers file") || strings.Contains(line, "not allowed to execute") {
			said = strings.TrimSpace(line)
			break
		}
	}
	switch {
	case code == 127 && strings.Contains(stderr, "sudo"):
		return n.connErr(true, fmt.Errorf("user %s is not root and sudo is not installed on %s: install sudo and give %s passwordless sudo, or connect as root", u, n.cfg.Name, u))
	case code != 1 || said == "":
		return nil
	case strings.Contains(said, "password is required") || strings.Contains(said, "terminal is required"):
		return n.connErr(true, fmt.Errorf("sudo needs a password on %s: give %s NOPASSWD sudo (e.g. '%s ALL=(ALL:ALL) NOPASSWD: ALL' in /etc/sudoers.d/hastack), or connect as root", n.cfg.Name, u, u))
	}
	return n.connErr(true, fmt.Errorf("user %s may not use sudo on %s (%s): give %s NOPASSWD sudo, or connect as root", u, n.cfg.Name, said, u))
}

// watch forgets the connection when it ends, and ends it when the host
// stops answering keepalives: a host that went away is noticed within two
// KeepAlive periods rather than at TCP's timeout.
func (n *Node) watch(c *connection) {
	done := make(chan struct{})
	go func() {
		c.client.Wait()
		close(done)
		n.forget(c)
	}()
	every := n.pool.opts.KeepAlive
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		answered := make(chan struct{})
		go func() {
			c.client.SendRequest("keepalive@openssh.com", true, nil)
			close(answered)
		}()
		select {
		case <-answered:
		case <-done:
			return
		case <-time.After(every):
			c.client.Close()
			return
		}
	}
}
