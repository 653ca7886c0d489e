package supervise

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// Tests run one at a time on purpose: TestReapOrphans reaps every child of
// the test binary, which would steal other tests' processes.

// harness is a server on a temporary socket and a client of it.
type harness struct {
	t      *testing.T
	dir    string
	sock   string
	c      *Client
	cancel context.CancelFunc
	done   chan error
}

// newHarness serves in the background until the test ends. configure may
// adjust the options, or the server before it serves.
func newHarness(t *testing.T, configure ...func(*Options, *Server)) *harness {
	t.Helper()
	// Not t.TempDir: its long names can exceed a socket path's 108 bytes.
	dir, err := os.MkdirTemp("", "sv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &harness{t: t, dir: dir, sock: filepath.Join(dir, "run", "sv.sock"), done: make(chan error, 1)}
	opts := Options{SocketPath: h.sock, LogDir: filepath.Join(dir, "log"), Log: testLog{t}}
	srv := NewServer(opts)
	for _, f := range configure {
		f(&srv.opts, srv)
	}
	h.sock = srv.opts.SocketPath
	var ctx context.Context
	ctx, h.cancel = context.WithCancel(context.Background())
	go func() { h.done <- srv.Serve(ctx) }()
	t.Cleanup(func() { h.shutdown() })
	h.c = Dial(h.sock)
	waitFor(t, "the server to listen", func() bool {
		_, err := h.c.List(context.Background())
		return err == nil
	})
	return h
}

// shutdown ends Serve and returns its error.
func (h *harness) shutdown() error {
	h.cancel()
	err, ok := <-h.done
	if ok {
		close(h.done)
	}
	return err
}

// ctx is a generous bound for one call.
func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	h.t.Cleanup(cancel)
	return ctx
}

func (h *harness) start(s node.Service) {
	h.t.Helper()
	if err := h.c.Start(h.ctx(), s); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) status(name string) node.ServiceState {
	h.t.Helper()
	st, err := h.c.Status(h.ctx(), name)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func (h *harness) path(name string) string { return filepath.Join(h.dir, name) }

// readPID waits for a file holding a pid and returns it.
func (h *harness) readPID(name string) int {
	h.t.Helper()
	var pid int
	waitFor(h.t, name, func() bool {
		b, err := os.ReadFile(h.path(name))
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitFor polls cond; the bound only keeps a broken test from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// gone reports whether a process has ended. A zombie counts: it is dead,
// merely not yet reaped by whoever inherited it.
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}

func sleeper(name string) node.Service {
	return node.Service{Name: name, Argv: []string{"/bin/sleep", "1000"}}
}

func shell(name, script string, env ...string) node.Service {
	return node.Service{Name: name, Argv: []string{"/bin/sh", "-c", script}, Env: env}
}

func names(states []node.ServiceState) []string {
	var out []string
	for _, s := range states {
		out = append(out, s.Name)
	}
	return out
}

func TestStartStatusList(t *testing.T) {
	h := newHarness(t)
	for _, n := range []string{"a", "b", "c"} {
		h.start(sleeper(n))
	}
	a := h.status("a")
	if !a.Running || a.PID <= 0 || a.Started.IsZero() || !reflect.DeepEqual(a.Argv, []string{"/bin/sleep", "1000"}) {
		t.Fatalf("status a = %+v", a)
	}

	// A second start of a running service changes nothing.
	h.start(sleeper("a"))
	if again := h.status("a"); again.PID != a.PID || !again.Started.Equal(a.Started) {
		t.Fatalf("start twice: %+v, then %+v", a, again)
	}

	if st := h.status("nosuch"); st.Running || st.Name != "nosuch" {
		t.Fatalf("unknown service: %+v", st)
	}

	// A restarted service keeps its place and gets a new start time.
	b := h.status("b")
	if err := h.c.Stop(h.ctx(), "b", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	stopped := h.status("b")
	if stopped.Running || stopped.Exited.IsZero() || stopped.ExitCode != -1 || stopped.Signal != "SIGTERM" {
		t.Fatalf("stopped b = %+v", stopped)
	}
	h.start(sleeper("b"))
	list, err := h.c.List(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	if got := names(list); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("list order %v", got)
	}
	if nb := list[1]; !nb.Running || nb.PID == b.PID || !nb.Started.After(b.Started) {
		t.Fatalf("restarted b = %+v, was %+v", nb, b)
	}

	// Stopping what is not running is fine.
	for _, n := range []string{"nosuch", "b", "b"} {
		if err := h.c.Stop(h.ctx(), n, time.Second); err != nil {
			t.Fatalf("stop %s: %v", n, err)
		}
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	h := newHarness(t)
	h.start(shell("stubborn", `trap "" TERM; echo $$ > "$READY"; sleep 1000`, "READY="+h.path("ready")))
	h.readPID("ready") // the trap is set
	if err := h.c.Stop(h.ctx(), "stubborn", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if st := h.status("stubborn"); st.Running || st.ExitCode != -1 || st.Signal != "SIGKILL" {
		t.Fatalf("after stop: %+v", st)
	}
}

func TestStopKillsProcessGroup(t *testing.T) {
	h := newHarness(t)
	h.start(shell("forker", `/bin/sleep 1000 & echo $! > "$CHILD"; wait`, "CHILD="+h.path("child")))
	child := h.readPID("child")
	if gone(child) {
		t.Fatal("grandchild not running before stop")
	}
	if err := h.c.Stop(h.ctx(), "forker", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the grandchild to die", func() bool { return gone(child) })
}

func TestSignal(t *testing.T) {
	h := newHarness(t)
	h.start(shell("sig", `trap 'echo got > "$OUT"' USR1; echo $$ > "$READY"; while :; do sleep 0.05; done`,
		"OUT="+h.path("out"), "READY="+h.path("ready")))
	h.readPID("ready")
	if err := h.c.Signal(h.ctx(), "sig", syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the trap to write its file", func() bool {
		b, _ := os.ReadFile(h.path("out"))
		return string(b) == "got\n"
	})
	err := h.c.Signal(h.ctx(), "nosuch", syscall.SIGUSR1)
	if err == nil || !strings.Contains(err.Error(), "nosuch") || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("signal to unknown service: %v", err)
	}
}

func TestStartFailsFast(t *testing.T) {
	// A wide window, so a slow machine still sees the exit inside it.
	h := newHarness(t, func(_ *Options, s *Server) { s.startup = 10 * time.Second })
	logFile := h.path("bad.log")
	if err := os.WriteFile(logFile, []byte("output of an earlier run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := shell("bad", `echo "line 7: unknown option 'frobnicate'" >&2; exit 3`)
	svc.LogFile = logFile
	err := h.c.Start(h.ctx(), svc)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{"start bad", "code 3", "unknown option 'frobnicate'", logFile} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "earlier run") {
		t.Errorf("error shows an earlier run's output: %s", msg)
	}
	if st := h.status("bad"); st.Running || st.ExitCode != 3 {
		t.Fatalf("status after failed start: %+v", st)
	}
}

func TestEnvironmentAndDefaults(t *testing.T) {
	h := newHarness(t, func(o *Options, _ *Server) { o.BaseEnv = []string{"PATH=/bin:/usr/bin", "LANG=C", "KEEP=base"} })
	h.start(shell("env", `echo "$LANG $FOO $KEEP $HOME $(pwd)"; exec sleep 1000`, "LANG=C.UTF-8", "FOO=1", "FOO=2"))
	logFile := filepath.Join(h.dir, "log", "env.log") // the default, under Options.LogDir
	waitFor(t, "the service's output", func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.HasSuffix(string(b), "\n")
	})
	b, _ := os.ReadFile(logFile)
	home := "/root"
	if os.Getuid() != 0 {
		home = os.Getenv("HOME")
	}
	if got, want := string(b), "C.UTF-8 2 base "+home+" /\n"; got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}

func TestUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("switching users needs root; run the tests as root to cover it")
	}
	h := newHarness(t)
	svc := shell("who", `id -u; id -g; echo "$HOME $USER"; exec sleep 1000`)
	svc.User = "nobody"
	h.start(svc)
	logFile := filepath.Join(h.dir, "log", "who.log")
	waitFor(t, "id's output", func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Count(string(b), "\n") == 3
	})
	b, _ := os.ReadFile(logFile)
	if got, want := string(b), "65534\n65534\n/nonexistent nobody\n"; got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}

func TestRestartFromDefinition(t *testing.T) {
	h := newHarness(t)
	def := node.Service{
		Name:       "db",
		Argv:       []string{"/bin/sleep", "1000"},
		Env:        []string{"A=1"},
		Dir:        "/tmp",
		LogFile:    h.path("db.log"),
		StopSignal: syscall.SIGINT,
	}
	h.start(def)
	h.start(sleeper("other"))
	first := h.status("db")
	if err := h.c.Stop(h.ctx(), "db", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	recs, err := h.c.Definitions(h.ctx())
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || !reflect.DeepEqual(recs[0].Service, def) || recs[0].State.Running ||
		recs[0].State.Signal != "SIGINT" || recs[1].Service.Name != "other" || !recs[1].State.Running {
		t.Fatalf("definitions: %+v", recs)
	}
	if err := h.c.Restart(h.ctx(), "db"); err != nil {
		t.Fatal(err)
	}
	if st := h.status("db"); !st.Running || st.PID == first.PID {
		t.Fatalf("after restart: %+v (first run %+v)", st, first)
	}
	err = h.c.Restart(h.ctx(), "nosuch")
	if err == nil || !strings.Contains(err.Error(), "restart nosuch") {
		t.Fatalf("restart of an unknown service: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		svc  node.Service
		want string
	}{
		{node.Service{Name: "ghost", Argv: []string{"/bin/sleep", "1"}, User: "no-such-user-here"}, `start ghost: unknown user "no-such-user-here"`},
		{node.Service{Name: "missing", Argv: []string{"/usr/sbin/no-such-daemon"}}, "start missing: /usr/sbin/no-such-daemon does not exist"},
		{node.Service{Name: "relative", Argv: []string{"sleep", "1"}}, "not an absolute path"},
		{node.Service{Name: "empty"}, "start empty: no command"},
		{node.Service{Name: "a/b", Argv: []string{"/bin/sleep", "1"}}, "invalid service name"},
		{node.Service{Name: "nodir", Argv: []string{"/bin/sleep", "1"}, Dir: "/no/such/dir"}, "working directory /no/such/dir does not exist"},
	}
	for _, tc := range cases {
		err := h.c.Start(h.ctx(), tc.svc)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("start %s: got %v, want %q", tc.svc.Name, err, tc.want)
		}
	}
	if list, err := h.c.List(h.ctx()); err != nil || len(list) != 0 {
		t.Fatalf("failed starts were recorded: %v %v", list, err)
	}
}

func TestServeStopsServices(t *testing.T) {
	h := newHarness(t)
	h.start(sleeper("one"))
	h.start(shell("stubborn", `trap "" TERM; echo $$ > "$READY"; sleep 1000`, "READY="+h.path("ready")))
	h.readPID("ready")
	one := h.status("one").PID
	stubborn := h.status("stubborn").PID
	// Make the shutdown quick: the stubborn one would take the full grace.
	if err := h.c.Stop(h.ctx(), "stubborn", 0); err != nil {
		t.Fatal(err)
	}
	if err := h.shutdown(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for _, pid := range []int{one, stubborn} {
		if !gone(pid) {
			t.Errorf("pid %d still running after Serve returned", pid)
		}
	}
	if _, err := os.Lstat(h.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	_, err := h.c.Status(h.ctx(), "one")
	if err == nil || !strings.Contains(err.Error(), "supervisor is not running at "+h.sock) {
		t.Fatalf("after shutdown: %v", err)
	}
}

func TestSocket(t *testing.T) {
	h := newHarness(t)
	fi, err := os.Stat(h.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v", fi.Mode().Perm())
	}

	// Garbage gets an error, and the server carries on.
	conn, err := net.Dial("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("hello?\n"))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.Contains(line, "bad request") {
		t.Errorf("reply to garbage: %q", line)
	}

	// A second server on a live socket refuses; on a stale one it takes over.
	if err := NewServer(Options{SocketPath: h.sock}).Serve(context.Background()); err == nil || !strings.Contains(err.Error(), "another supervisor") {
		t.Errorf("second server: %v", err)
	}
	h.shutdown()
	stale, err := net.Listen("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	h2 := newHarness(t, func(o *Options, _ *Server) { o.SocketPath = h.sock })
	if _, err := h2.c.List(h2.ctx()); err != nil {
		t.Fatal(err)
	}

	missing := Dial(filepath.Join(h.dir, "nope.sock"))
	if err := missing.Start(h.ctx(), sleeper("x")); err == nil || !strings.Contains(err.Error(), "start x: the supervisor is not running at ") {
		t.Errorf("no server: %v", err)
	}
}

func TestContextCancel(t *testing.T) {
	h := newHarness(t)
	h.start(shell("stubborn", `trap "" TERM; echo $$ > "$READY"; sleep 1000`, "READY="+h.path("ready")))
	h.readPID("ready")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	err := h.c.Stop(ctx, "stubborn", time.Hour)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stop stubborn") {
		t.Fatalf("cancelled stop: %v", err)
	}
	if err := h.c.Stop(h.ctx(), "stubborn", 0); err != nil {
		t.Fatal(err)
	}
}

func TestReapOrphans(t *testing.T) {
	// The wait4(-1) path, as PID 1 runs it. Orphans reach only PID 1 or a
	// subreaper, so that they are reaped is for the lab to show.
	h := newHarness(t, func(o *Options, _ *Server) { o.ReapOrphans = true })
	h.start(sleeper("s"))
	// Long enough to outlive the startup window.
	h.start(shell("quick", `sleep 1; exit 4`))
	waitFor(t, "quick to be reaped", func() bool { return !h.status("quick").Running })
	if st := h.status("quick"); st.ExitCode != 4 {
		t.Fatalf("quick: %+v", st)
	}
	if err := h.c.Stop(h.ctx(), "s", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if st := h.status("s"); st.Running || st.Signal != "SIGTERM" {
		t.Fatalf("s: %+v", st)
	}
}

// Ready is called once the socket listens: a client that connects then is
// answered (the lab reports a node ready from it).
func TestReadyAfterListen(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		done <- NewServer(Options{SocketPath: sock, LogDir: t.TempDir(), Ready: func() {
			// The socket listens: a connection made now waits in its
			// backlog until the server answers it.
			go func() {
				_, err := Dial(sock).List(ctx)
				ready <- err
			}()
		}}).Serve(ctx)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("a client right after Ready: %v", err)
		}
	case err := <-done:
		t.Fatalf("server ended before Ready: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("Ready never called")
	}
}
