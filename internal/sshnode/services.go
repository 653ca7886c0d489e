package sshnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/supervise"
)

// Init systems a host can keep services with.
const (
	InitHastack = "hastack" // hastack's own supervisor (lab nodes)
	InitSystemd = "systemd"
)

// Services is the host's supervisor: hastack's own when it runs there,
// systemd otherwise. Which one is found on first use and kept.
func (n *Node) Services() node.Supervisor { return services{n} }

// InitSystem reports what keeps services on the host: InitHastack or
// InitSystemd.
func (n *Node) InitSystem(ctx context.Context) (string, error) {
	sup, err := n.supervisor(ctx)
	if err != nil {
		return "", err
	}
	if _, ok := sup.(*Systemd); ok {
		return InitSystemd, nil
	}
	return InitHastack, nil
}

// services finds the host's supervisor on each call's context, so that
// Services() itself needs none and cannot fail.
type services struct{ n *Node }

func (s services) Start(ctx context.Context, svc node.Service) error {
	sup, err := s.n.supervisor(ctx)
	if err != nil {
		return err
	}
	return s.n.named(sup.Start(ctx, svc))
}

func (s services) Stop(ctx context.Context, name string, timeout time.Duration) error {
	sup, err := s.n.supervisor(ctx)
	if err != nil {
		return err
	}
	return s.n.named(sup.Stop(ctx, name, timeout))
}

func (s services) Signal(ctx context.Context, name string, sig syscall.Signal) error {
	sup, err := s.n.supervisor(ctx)
	if err != nil {
		return err
	}
	return s.n.named(sup.Signal(ctx, name, sig))
}

func (s services) Status(ctx context.Context, name string) (node.ServiceState, error) {
	sup, err := s.n.supervisor(ctx)
	if err != nil {
		return node.ServiceState{}, err
	}
	st, err := sup.Status(ctx, name)
	return st, s.n.named(err)
}

func (s services) List(ctx context.Context) ([]node.ServiceState, error) {
	sup, err := s.n.supervisor(ctx)
	if err != nil {
		return nil, err
	}
	l, err := sup.List(ctx)
	return l, s.n.named(err)
}

// named prefixes an error with the host's name unless it already has it.
func (n *Node) named(err error) error {
	if err == nil || strings.HasPrefix(err.Error(), n.cfg.Name+":") {
		return err
	}
	return fmt.Errorf("%s: %w", n.cfg.Name, err)
}

// detectScript prints what keeps services on the host. hastack's own
// supervisor wins: a lab node has no systemd, and a host where an operator
// started hastack's supervisor wants it used. /run/systemd/system is how
// sd_booted(3) tells that systemd is PID 1.
const detectScript = `if [ -S "$1" ]; then echo hastack
elif [ -d /run/systemd/system ]; then echo systemd
else echo none; fi`

// supervisor finds the host's supervisor once. A failure to ask (the host
// unreachable) is not kept: the next call asks again.
func (n *Node) supervisor(ctx context.Context) (node.Supervisor, error) {
	n.supMu.Lock()
	defer n.supMu.Unlock()
	if n.sup != nil {
		return n.sup, nil
	}
	sock := n.pool.opts.SupervisorSocket
	res, err := n.Run(ctx, node.Cmd{Argv: []string{"sh", "-c", detectScript, "sh", sock}})
	if err != nil {
		return nil, fmt.Errorf("%s: finding the init system: %w", n.cfg.Name, scriptErr(err))
	}
	switch kind := strings.TrimSpace(string(res.Stdout)); kind {
	case InitHastack:
		if n.cfg.sudo() {
			return nil, fmt.Errorf("%s: hastack's supervisor runs here, and its socket %s accepts root only: connect as root", n.cfg.Name, sock)
		}
		f, err := n.forward(sock)
		if err != nil {
			return nil, fmt.Errorf("%s: forwarding hastack's supervisor: %w", n.cfg.Name, err)
		}
		n.fwd = f
		n.sup = supervise.Dial(f.addr)
	case InitSystemd:
		n.sup = NewSystemd(n)
	default:
		return nil, fmt.Errorf("%s: no init system hastack can keep services with: neither systemd (no /run/systemd/system) nor hastack's supervisor (no %s)", n.cfg.Name, sock)
	}
	return n.sup, nil
}

// forwarder makes the remote supervisor's unix socket reachable here, as
// 'ssh -L local.sock:remote.sock' does, so the supervisor's own client
// speaks to it unchanged. It listens on an abstract socket (no file to
// leave behind; it goes with the process) and serves this process only:
// anything else on the machine could otherwise drive a root supervisor on
// the host.
type forwarder struct {
	ln   *net.UnixListener
	addr string
	wg   sync.WaitGroup
}

func (n *Node) forward(remote string) (*forwarder, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("@hastack-ssh-%d-%s-%s", os.Getpid(), n.cfg.Name, hex.EncodeToString(b[:]))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return nil, err
	}
	f := &forwarder{ln: ln, addr: addr}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return // closed
			}
			if !fromThisProcess(c) {
				c.Close()
				continue
			}
			go n.pipe(c, remote)
		}
	}()
	return f, nil
}

func (f *forwarder) close() {
	f.ln.Close()
	f.wg.Wait()
}

// fromThisProcess reports whether the peer of c is this very process.
func fromThisProcess(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return int(cred.Pid) == os.Getpid()
}

// pipe carries one supervisor call to the host and back. The connection is
// held for the call, so the idle timer leaves it open meanwhile.
func (n *Node) pipe(local *net.UnixConn, remote string) {
	defer local.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n.pool.opts.ConnectAttempts)*(n.pool.opts.ConnectTimeout+3*time.Second))
	client, release, err := n.acquire(ctx)
	cancel()
	if err != nil {
		refuse(local, err)
		return
	}
	defer release()
	rc, err := client.Dial("unix", remote)
	if err != nil {
		refuse(local, fmt.Errorf("%s: reaching hastack's supervisor at %s over SSH: %w", n.cfg.Name, remote, err))
		return
	}
	defer rc.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(rc, local); rc.Close(); done <- struct{}{} }()
	go func() { io.Copy(local, rc); local.CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

// refuse answers a supervisor call that cannot reach the host with the
// reason, in the supervisor's own reply format ({"error": ...}), so the
// caller reads why instead of a bare EOF. The request is read first: the
// client writes it before it reads.
func refuse(local net.Conn, err error) {
	local.SetDeadline(time.Now().Add(5 * time.Second))
	var req json.RawMessage
	if json.NewDecoder(local).Decode(&req) != nil {
		return
	}
	json.NewEncoder(local).Encode(map[string]string{"error": err.Error()})
}

// ServiceLog says where a service's log is on the host and returns its last
// lines: the unit's journal under systemd (Debian's units log there, or to
// the files their own configuration names), hastack's log file under
// hastack's supervisor.
func (n *Node) ServiceLog(ctx context.Context, service string, lines int) (where, tail string) {
	sup, err := n.supervisor(ctx)
	if _, ok := sup.(*Systemd); err == nil && ok {
		unit := Unit(service)
		res, err := n.Run(ctx, node.Cmd{Argv: []string{"journalctl", "--no-pager", "-o", "short-precise", "-n", strconv.Itoa(lines), "-u", unit}})
		where = "journalctl -u " + unit
		if err != nil {
			return where, "  (" + err.Error() + ")"
		}
		return where, "  " + strings.ReplaceAll(strings.TrimRight(string(res.Stdout), "\n"), "\n", "\n  ")
	}
	path := "/var/log/hastack/" + service + ".log"
	data, err := n.ReadFile(ctx, path)
	if err != nil {
		return path, "  (" + err.Error() + ")"
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return path, "  " + strings.Join(all, "\n  ")
}
