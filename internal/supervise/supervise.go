// Package supervise is hastack's process supervisor for machines without
// systemd: a lab node's PID 1 runs a Server for the node's whole life, and
// hastack on the host drives it through a Client over a unix socket.
//
// # API
//
//	func NewServer(opts Options) *Server
//	func (s *Server) Serve(ctx context.Context) error
//	func Dial(socketPath string) *Client   // implements node.Supervisor
//	func (c *Client) Restart(ctx context.Context, name string) error
//	func (c *Client) Definitions(ctx context.Context) ([]Record, error)
//
// # Processes
//
// Each service runs in its own process group, with stdin on /dev/null and
// stdout and stderr appended to its log file. The environment is
// Options.BaseEnv, then HOME, USER and LOGNAME of the service's user (as
// systemd sets them), then the service's own Env; a later KEY wins. Start
// waits a short startup window (200 ms) and reports a process that dies
// within it as an error carrying its exit status and the tail of what it
// logged, because engines given a bad configuration die at once and the
// caller should see why. When a service's main process exits, whatever is
// left of its process group is SIGKILLed, so a stopped service leaves no
// stray children behind.
//
// # Reaping
//
// The server never uses os/exec: exec.Cmd.Wait and a reaper calling
// wait4(-1) would steal each other's children. Processes are started with
// syscall.ForkExec, and one goroutine reaps on every SIGCHLD. With
// Options.ReapOrphans (PID 1 of a PID namespace) it reaps every child,
// including orphans reparented to it; a process using that option must not
// start children any other way. Without it (an ordinary process, as in the
// tests) it waits only for the pids it started.
//
// # Protocol
//
// One JSON request and one JSON response per connection; requests are rare
// and this keeps both ends trivial. A request carries the time left on the
// caller's context, not an absolute deadline, so clock skew cannot matter.
//
// The server keeps every definition it was given until it exits, so a
// stopped service can be started again by name (Client.Restart) and the
// whole set can be read back (Client.Definitions). Nothing survives the
// server process.
package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// Options configures a Server.
type Options struct {
	// SocketPath is where the server listens. Required.
	SocketPath string
	// BaseEnv is every service's starting environment; default
	// PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	// and LANG=C.UTF-8.
	BaseEnv []string
	// ReapOrphans makes the server reap every child of this process, not
	// only the ones it started. Set it when running as PID 1.
	ReapOrphans bool
	// LogDir holds the default log files, <LogDir>/<name>.log; default
	// /var/log/hastack.
	LogDir string
	// Log receives the server's own messages (starts, exits, errors);
	// default nowhere.
	Log io.Writer
	// Ready, when set, is called once the socket listens: a client that
	// connects after it is answered.
	Ready func()
}

// Record is a service's definition as last started, and its state.
type Record struct {
	Service node.Service      `json:"service"`
	State   node.ServiceState `json:"state"`
}

const (
	// startupWindow is how long Start watches a new process for an
	// immediate death.
	startupWindow = 200 * time.Millisecond
	// shutdownGrace is how long Serve gives each service to stop on
	// return, before SIGKILL.
	shutdownGrace = 10 * time.Second
)

// Server supervises services and serves the socket protocol.
type Server struct {
	opts Options
	// startup is startupWindow, adjustable by tests on slow machines.
	startup time.Duration

	logMu sync.Mutex

	// mu guards everything below. It is also held across fork and across
	// each reaping pass, which is what makes pids safe to use: a pid
	// recorded as running has not been reaped, so it (and its process
	// group id) cannot have been reused by another process.
	mu       sync.Mutex
	services map[string]*service
	order    []string // names, in first-start order
	byPID    map[int]*service
	closing  bool // Serve is shutting down; no new starts
}

// service is one named service and its latest run.
type service struct {
	def node.Service
	run *run
}

// run is one life of a service's process.
type run struct {
	pid     int
	started time.Time
	done    chan struct{} // closed once reaped; the fields below are then final
	exited  time.Time
	code    int
	signal  string
}

// NewServer returns a server; call Serve to run it.
func NewServer(opts Options) *Server {
	if opts.BaseEnv == nil {
		opts.BaseEnv = []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"LANG=C.UTF-8",
		}
	}
	if opts.LogDir == "" {
		opts.LogDir = "/var/log/hastack"
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	return &Server{
		opts:     opts,
		startup:  startupWindow,
		services: map[string]*service{},
		byPID:    map[int]*service{},
	}
}

func (s *Server) logf(format string, a ...any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.opts.Log, "supervise: "+format+"\n", a...)
}

// Serve listens on the socket and serves requests until ctx is done, then
// stops every running service (stop signal, 10 s grace, SIGKILL to the
// process group) and returns. It returns an error only when it cannot
// listen; a Server serves once.
func (s *Server) Serve(ctx context.Context) error {
	// Subscribe before anything can be started, so no exit goes unnoticed.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGCHLD)
	defer signal.Stop(sigc)

	ln, err := s.listen()
	if err != nil {
		return err
	}
	defer os.Remove(s.opts.SocketPath)
	if s.opts.Ready != nil {
		s.opts.Ready()
	}

	reaperDone := make(chan struct{})
	stopReaper := make(chan struct{})
	go func() {
		defer close(reaperDone)
		for {
			s.reap()
			select {
			case <-sigc:
			case <-stopReaper:
				return
			}
		}
	}()

	// Requests get a context that ends with Serve's, so a long Stop does
	// not hold up shutdown.
	reqCtx, cancelReqs := context.WithCancel(context.Background())
	var handlers sync.WaitGroup
	stopAccept := context.AfterFunc(ctx, func() { ln.Close() })
	defer stopAccept()
	s.logf("listening on %s", s.opts.SocketPath)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// Out of file descriptors and the like: PID 1 must not give up.
			s.logf("accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			s.handle(reqCtx, conn)
		}()
	}

	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	cancelReqs()
	handlers.Wait()
	s.stopAll()
	close(stopReaper)
	<-reaperDone
	s.logf("stopped")
	return nil
}

// listen binds the socket with mode 0600 from the first instant: it is
// bound inside a private directory, then renamed into place, so no client
// can connect while it still has the umask's mode.
func (s *Server) listen() (net.Listener, error) {
	path := s.opts.SocketPath
	if path == "" {
		return nil, errors.New("supervise: no socket path")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("supervise: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("supervise: %s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("supervise: another supervisor is serving at %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("supervise: removing stale socket: %w", err)
		}
	}
	priv, err := os.MkdirTemp(dir, ".sv")
	if err != nil {
		return nil, fmt.Errorf("supervise: %w", err)
	}
	defer os.RemoveAll(priv)
	tmp := filepath.Join(priv, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("supervise: %w", err)
	}
	// The listener would unlink its original name on Close, which is gone
	// after the rename; Serve removes the real one.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("supervise: %w", err)
	}
	return ln, nil
}

// reap collects every exited child there is. It holds mu throughout, and
// fork happens under mu, so a child can never be reaped before its pid is
// recorded, nor can syscall.ForkExec's own wait for a child whose exec
// failed race with this one.
func (s *Server) reap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.ReapOrphans {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				return
			}
			s.exitedLocked(pid, ws)
		}
	}
	for pid := range s.byPID {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		for err == syscall.EINTR {
			got, err = syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		}
		if err == nil && got == pid {
			s.exitedLocked(pid, ws)
		}
	}
}

// exitedLocked records a reaped child's end.
func (s *Server) exitedLocked(pid int, ws syscall.WaitStatus) {
	sv := s.byPID[pid]
	if sv == nil {
		return // an orphan reparented to us; reaping it was the point
	}
	delete(s.byPID, pid)
	r := sv.run
	r.exited = time.Now()
	switch {
	case ws.Exited():
		r.code = ws.ExitStatus()
	case ws.Signaled():
		r.code, r.signal = -1, signalName(ws.Signal())
	}
	// Leftovers of the group (a daemon's helpers, a shell's children)
	// would otherwise outlive the service. The group id is the reaped pid;
	// reuse of it in the instants since wait4 is not a practical concern.
	syscall.Kill(-pid, syscall.SIGKILL)
	close(r.done)
	if r.signal != "" {
		s.logf("%s (pid %d) killed by %s", sv.def.Name, pid, r.signal)
	} else {
		s.logf("%s (pid %d) exited with code %d", sv.def.Name, pid, r.code)
	}
}

// stopAll stops every running service at once, for shutdown.
func (s *Server) stopAll() {
	s.mu.Lock()
	var names []string
	for _, name := range s.order {
		if s.services[name].running() {
			names = append(names, name)
		}
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			// Bounded, so a process stuck in the kernel cannot hold PID 1
			// (and so the whole node) up forever.
			ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace+5*time.Second)
			defer cancel()
			if err := s.stop(ctx, name, shutdownGrace); err != nil {
				s.logf("%v", err)
			}
		})
	}
	wg.Wait()
}

// handle serves one connection: one request, one response.
func (s *Server) handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	// A client that connects and says nothing must not pin a goroutine,
	// nor hold up shutdown.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	unblock := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	var req request
	err := json.NewDecoder(conn).Decode(&req)
	unblock()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return // a liveness probe: connected and hung up
		}
		s.logf("bad request: %v", err)
		json.NewEncoder(conn).Encode(response{Error: fmt.Sprintf("supervisor: bad request: %v", err)})
		return
	}
	conn.SetReadDeadline(time.Time{})
	if req.Budget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Budget)
		defer cancel()
	}
	resp := s.do(ctx, req)
	if err := json.NewEncoder(conn).Encode(resp); err != nil {
		s.logf("%s %s: writing response: %v", req.Op, req.Name, err)
	}
}

// do carries out a request.
func (s *Server) do(ctx context.Context, req request) response {
	var resp response
	var err error
	switch req.Op {
	case opStart:
		if req.Service == nil {
			err = errors.New("start: no service given")
		} else {
			err = s.start(ctx, *req.Service)
		}
	case opRestart:
		err = s.restart(ctx, req.Name)
	case opStop:
		err = s.stop(ctx, req.Name, req.Timeout)
	case opSignal:
		err = s.signal(req.Name, req.Signal)
	case opStatus:
		st := s.status(req.Name)
		resp.State = &st
	case opList:
		resp.States = s.list()
	case opDefinitions:
		resp.Records = s.definitions()
	default:
		err = fmt.Errorf("supervisor: unknown request %q", req.Op)
	}
	if err != nil {
		resp.Error = err.Error()
	}
	return resp
}

// signalName is the conventional name of a signal, as ps and kill print it.
func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	case syscall.SIGILL:
		return "SIGILL"
	case syscall.SIGTRAP:
		return "SIGTRAP"
	case syscall.SIGABRT:
		return "SIGABRT"
	case syscall.SIGBUS:
		return "SIGBUS"
	case syscall.SIGFPE:
		return "SIGFPE"
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGUSR2:
		return "SIGUSR2"
	case syscall.SIGPIPE:
		return "SIGPIPE"
	case syscall.SIGALRM:
		return "SIGALRM"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGXCPU:
		return "SIGXCPU"
	case syscall.SIGXFSZ:
		return "SIGXFSZ"
	case syscall.SIGSYS:
		return "SIGSYS"
	case syscall.SIGVTALRM:
		return "SIGVTALRM"
	case syscall.SIGPROF:
		return "SIGPROF"
	case syscall.SIGIO:
		return "SIGIO"
	case syscall.SIGPWR:
		return "SIGPWR"
	}
	return fmt.Sprintf("signal %d", int(sig))
}
