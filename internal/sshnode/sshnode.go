// Package sshnode is the node transport for real hosts: node.Node over SSH
// (golang.org/x/crypto/ssh), so every deploy phase, probe and drill that
// runs on a lab node runs unchanged on a host reached over the network.
//
// What it promises, per host:
//
//   - key authentication only (a key file or the ssh-agent), host keys
//     checked against a known_hosts file: an unknown key is refused unless
//     new keys are accepted explicitly, a changed key always is;
//   - one connection per host, made on first use with a deadline and a few
//     retries (connecting is the only thing ever retried: a command that may
//     have run is never run twice), kept alive, and closed when idle;
//   - commands as argv, quoted for the remote shell, through 'sudo -n' when
//     the user is not root (a password prompt fails at once, with the
//     remedy), with a deadline that ends the remote process;
//   - files written atomically (temporary file, then rename) with mode and
//     owner;
//   - long-running services kept by what the host has: hastack's own
//     supervisor when it runs there (lab nodes reached over SSH), systemd
//     otherwise (Debian's units for the engines);
//   - bounded parallelism: connects at once across hosts, commands at once
//     across hosts, and sessions at once per host (below sshd's MaxSessions);
//   - every error names the host.
package sshnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hastack/hastack/internal/node"
)

// Config is how to reach one host. Paths are absolute: the caller resolves
// them against the spec's folder and the home folder.
type Config struct {
	// Name is the node's name in the spec; every error starts with it.
	Name string
	// Address is the node's management address, where hastack reaches the
	// engines' ports (node.Node.Address). It is not necessarily where SSH
	// connects: that is Host.
	Address string
	Host    string
	Port    int
	User    string
	// IdentityFile is a private key file; Agent offers the ssh-agent's
	// keys. At least one of them.
	IdentityFile string
	Agent        bool
	// AgentSocket is the agent's socket; default $SSH_AUTH_SOCK.
	AgentSocket string
	KnownHosts  string
	// AcceptNewHostKeys trusts an unknown host key and records it in
	// KnownHosts. A changed key is refused regardless.
	AcceptNewHostKeys bool
}

// addr is host:port for dialling and for known_hosts.
func (c Config) addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// who names the login in messages: root@10.0.0.11:22.
func (c Config) who() string { return c.User + "@" + c.addr() }

// sudo reports whether commands run through sudo.
func (c Config) sudo() bool { return c.User != "root" }

// Options bound what a Pool does at once and how long it waits.
type Options struct {
	// ConnectTimeout bounds one connection attempt: TCP, SSH handshake and
	// authentication. Default 10s.
	ConnectTimeout time.Duration
	// ConnectAttempts is how many times a failed connection is tried when
	// the failure may pass (refused, unreachable, timed out, cut during
	// the handshake). Host key and authentication failures are final.
	// Default 3.
	ConnectAttempts int
	// CommandTimeout is the deadline of a command whose context has none.
	// Default 15m.
	CommandTimeout time.Duration
	// MaxConnecting bounds connections being made at once across hosts.
	// Default 16.
	MaxConnecting int
	// MaxCommands bounds commands running at once across hosts. Default 64.
	MaxCommands int
	// MaxSessions bounds commands running at once on one host. OpenSSH's
	// sshd refuses more than MaxSessions (default 10) per connection.
	// Default 8.
	MaxSessions int
	// IdleTimeout closes a connection nothing has used for that long; the
	// next command connects again. Default 30s.
	IdleTimeout time.Duration
	// KeepAlive is how often an open connection is checked; one that does
	// not answer within the same time is closed. Default 15s.
	KeepAlive time.Duration
	// SupervisorSocket is where hastack's own supervisor listens on a host
	// that runs it (lab nodes). Default /run/hastack/supervisor.sock.
	SupervisorSocket string

	// dial replaces TCP dialling in tests.
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(i *int, v int) {
		if *i <= 0 {
			*i = v
		}
	}
	def(&o.ConnectTimeout, 10*time.Second)
	def(&o.CommandTimeout, 15*time.Minute)
	def(&o.IdleTimeout, 30*time.Second)
	def(&o.KeepAlive, 15*time.Second)
	defInt(&o.ConnectAttempts, 3)
	defInt(&o.MaxConnecting, 16)
	defInt(&o.MaxCommands, 64)
	defInt(&o.MaxSessions, 8)
	if o.SupervisorSocket == "" {
		o.SupervisorSocket = "/run/hastack/supervisor.sock"
	}
	return o
}

// Pool holds the connections to a set of hosts and the limits they share.
// Its nodes connect on first use.
type Pool struct {
	opts       Options
	connecting chan struct{}
	commands   chan struct{}
	known      *knownHosts

	mu     sync.Mutex
	nodes  []*Node
	closed bool
}

// NewPool returns an empty pool.
func NewPool(o Options) *Pool {
	o = o.withDefaults()
	return &Pool{
		opts:       o,
		connecting: make(chan struct{}, o.MaxConnecting),
		commands:   make(chan struct{}, o.MaxCommands),
		known:      newKnownHosts(),
	}
}

// Node returns the node for one host. It does not connect.
func (p *Pool) Node(c Config) (*Node, error) {
	switch {
	case c.Name == "":
		return nil, errors.New("ssh node: no name")
	case c.Host == "" || c.User == "" || c.Port < 1 || c.Port > 65535:
		return nil, fmt.Errorf("%s: ssh: incomplete settings (host %q, user %q, port %d)", c.Name, c.Host, c.User, c.Port)
	case c.IdentityFile == "" && !c.Agent:
		return nil, fmt.Errorf("%s: ssh: no key: give an identity file or use the agent", c.Name)
	case c.KnownHosts == "":
		return nil, fmt.Errorf("%s: ssh: no known_hosts file to check host keys against", c.Name)
	}
	n := &Node{pool: p, cfg: c, sessions: make(chan struct{}, p.opts.MaxSessions)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("%s: ssh: the connection pool is closed", c.Name)
	}
	p.nodes = append(p.nodes, n)
	return n, nil
}

// Close closes every connection of the pool. Commands in flight fail.
func (p *Pool) Close() error {
	p.mu.Lock()
	nodes := p.nodes
	p.closed = true
	p.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		errs = append(errs, n.Close())
	}
	return errors.Join(errs...)
}

// Node is one host reached over SSH. It implements node.Node.
type Node struct {
	pool *Pool
	cfg  Config
	// sessions bounds this host's commands in flight.
	sessions chan struct{}

	mu     sync.Mutex
	conn   *connection // current, or being made; nil when none
	busy   int         // users of the connection right now
	idle   *time.Timer
	closed bool

	supMu sync.Mutex
	sup   node.Supervisor // found on first use
	fwd   *forwarder
}

var _ node.Node = (*Node)(nil)

// connection is one SSH connection, shared by everything that waits for it
// while it is being made: a host that cannot be reached is tried once for
// all of them, not once each.
type connection struct {
	ready  chan struct{} // closed once client or err is set
	client *ssh.Client
	err    error
	// last is the latest failed attempt while more are to come (guarded
	// by the node's mu): what a caller whose deadline ends meanwhile is
	// told, rather than only that its deadline passed.
	last error
}

// Name is the node's name in the spec.
func (n *Node) Name() string { return n.cfg.Name }

// Address is the node's management address.
func (n *Node) Address() string { return n.cfg.Address }

// Config is how the node is reached.
func (n *Node) Config() Config { return n.cfg }

// acquire returns the node's connection, connecting when there is none, and
// marks it in use until release is called. Everything that uses the
// connection holds it, so the idle timer never closes it under a command.
func (n *Node) acquire(ctx context.Context) (client *ssh.Client, release func(), err error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, nil, fmt.Errorf("%s: ssh: connection closed", n.cfg.Name)
	}
	n.busy++
	if n.idle != nil {
		n.idle.Stop()
	}
	c := n.conn
	if c == nil {
		c = &connection{ready: make(chan struct{})}
		n.conn = c
		// Made apart from ctx: others may wait for it with longer
		// deadlines. connect bounds itself.
		go n.connect(c)
	}
	n.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(n.release) }
	select {
	case <-c.ready:
	case <-ctx.Done():
		release()
		n.mu.Lock()
		last := c.last
		n.mu.Unlock()
		if last != nil {
			return nil, nil, fmt.Errorf("%w (still trying; the last attempt: %v)", ctx.Err(), last)
		}
		return nil, nil, fmt.Errorf("%s: connecting to %s: %w", n.cfg.Name, n.cfg.who(), ctx.Err())
	}
	if c.err != nil {
		n.forget(c)
		release()
		return nil, nil, c.err
	}
	return c.client, release, nil
}

func (n *Node) release() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.busy--
	if n.busy == 0 && n.conn != nil && !n.closed {
		if n.idle == nil {
			n.idle = time.AfterFunc(n.pool.opts.IdleTimeout, n.closeIdle)
		} else {
			n.idle.Reset(n.pool.opts.IdleTimeout)
		}
	}
}

// closeIdle closes the connection if nothing used it since the timer was
// set. The check is under the lock: a command that started meanwhile keeps
// it open.
func (n *Node) closeIdle() {
	n.mu.Lock()
	c := n.conn
	if n.busy > 0 || c == nil {
		n.mu.Unlock()
		return
	}
	select {
	case <-c.ready:
	default:
		n.mu.Unlock()
		return // still connecting: someone is about to use it
	}
	n.conn = nil
	n.mu.Unlock()
	if c.client != nil {
		c.client.Close()
	}
}

// forget drops c as the node's connection (it failed or broke), so the next
// user connects afresh.
func (n *Node) forget(c *connection) {
	n.mu.Lock()
	if n.conn == c {
		n.conn = nil
	}
	n.mu.Unlock()
}

// Close closes the node's connection and its supervisor forwarding.
func (n *Node) Close() error {
	n.mu.Lock()
	c := n.conn
	n.conn, n.closed = nil, true
	if n.idle != nil {
		n.idle.Stop()
	}
	n.mu.Unlock()
	n.supMu.Lock()
	if n.fwd != nil {
		n.fwd.close()
		n.fwd = nil
	}
	n.supMu.Unlock()
	if c != nil {
		go func() {
			<-c.ready
			if c.client != nil {
				c.client.Close()
			}
		}()
	}
	return nil
}
