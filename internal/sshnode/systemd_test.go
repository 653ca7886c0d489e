package sshnode

import (
	"context"
	"io/fs"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// fakeHost records every command and file and answers 'systemctl show'
// from a table of unit states.
type fakeHost struct {
	mu     sync.Mutex
	cmds   []string
	files  map[string]string
	active map[string]string // unit -> ActiveState; absent: not loaded
	// stopAfter makes a unit stop after that many 'show' calls once a
	// stop was asked; -1 never.
	stopAfter map[string]int
}

func newFakeHost() *fakeHost {
	return &fakeHost{files: map[string]string{}, active: map[string]string{}, stopAfter: map[string]int{}}
}

func (f *fakeHost) Name() string { return "ctl1" }

func (f *fakeHost) WriteFile(_ context.Context, p string, data []byte, _ fs.FileMode, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[p] = string(data)
	f.cmds = append(f.cmds, "write "+p)
	return nil
}

func (f *fakeHost) Run(_ context.Context, c node.Cmd) (node.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	line := strings.Join(c.Argv, " ")
	unit := c.Argv[len(c.Argv)-1]
	if len(c.Argv) > 1 && c.Argv[1] == "show" {
		st, ok := f.active[unit]
		if n, stopping := f.stopAfter[unit]; stopping && n >= 0 {
			if n == 0 {
				st = "inactive"
				f.active[unit] = st
			}
			f.stopAfter[unit] = n - 1
		}
		if !ok {
			return node.Result{Stdout: []byte("LoadState=not-found\nActiveState=inactive\nMainPID=0\n")}, nil
		}
		return node.Result{Stdout: []byte("LoadState=loaded\nActiveState=" + st + "\nMainPID=42\nExecMainStartTimestamp=@1700000000\nExecMainExitTimestamp=\nExecMainCode=0\nExecMainStatus=0\nExecStart={ path=/usr/sbin/x ; argv[]=/usr/sbin/x -a b ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n")}, nil
	}
	f.cmds = append(f.cmds, line)
	switch {
	case strings.HasPrefix(line, "systemctl start "), strings.HasPrefix(line, "systemctl enable --now "):
		f.active[unit] = "active"
	case line == "galera_new_cluster":
		f.active["mariadb.service"] = "active"
	case strings.HasPrefix(line, "systemctl stop --no-block "):
		if _, ok := f.stopAfter[unit]; !ok {
			f.stopAfter[unit] = 0
		}
	case strings.HasPrefix(line, "systemctl kill --signal=SIGKILL "):
		f.stopAfter[unit] = 0
	}
	return node.Result{}, nil
}

func (f *fakeHost) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

func TestSystemdStartsDebianUnits(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		svc  node.Service
		want []string
	}{
		{node.Service{Name: "memcached", Argv: []string{"/usr/bin/memcached", "-m", "64"}}, []string{"systemctl start memcached.service"}},
		{node.Service{Name: "rabbitmq", Argv: []string{"/usr/lib/rabbitmq/bin/rabbitmq-server"}, User: "rabbitmq"}, []string{"sh -c " + epmdScript, "systemctl start rabbitmq-server.service"}},
		{node.Service{Name: "mariadb", Argv: []string{"/usr/sbin/mariadbd", "--user=mysql"}}, []string{"systemctl start mariadb.service"}},
		// A new Galera cluster: Debian's bootstrap, not a plain start.
		{node.Service{Name: "mariadb", Argv: []string{"/usr/sbin/mariadbd", "--user=mysql", "--wsrep-new-cluster"}}, []string{"galera_new_cluster"}},
		// The unit recovers the position itself.
		{node.Service{Name: "mariadb", Argv: []string{"/usr/sbin/mariadbd", "--user=mysql", "--wsrep-start-position=u:5"}}, []string{"systemctl start mariadb.service"}},
		{node.Service{Name: "haproxy", Argv: []string{"/usr/sbin/haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"}}, []string{"systemctl start haproxy.service"}},
		{node.Service{Name: "keepalived", Argv: []string{"/usr/sbin/keepalived", "--dont-fork"}}, []string{"systemctl start keepalived.service"}},
		{node.Service{Name: "chrony", Argv: []string{"/usr/sbin/chronyd", "-d"}}, []string{"systemctl start chrony.service"}},
	} {
		h := newFakeHost()
		if err := NewSystemd(h).Start(ctx, c.svc); err != nil {
			t.Errorf("%v: %v", c.svc.Argv, err)
			continue
		}
		if got := h.commands(); strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%v: ran %q, want %q", c.svc.Argv, got, c.want)
		}
	}
}

func TestSystemdLeavesARunningUnit(t *testing.T) {
	h := newFakeHost()
	h.active["mariadb.service"] = "activating" // joining: SST in progress
	if err := NewSystemd(h).Start(context.Background(), node.Service{Name: "mariadb", Argv: []string{"/usr/sbin/mariadbd"}}); err != nil {
		t.Fatal(err)
	}
	if got := h.commands(); len(got) != 0 {
		t.Errorf("started a unit that is starting: %q", got)
	}
}

func TestSystemdRefusesSharedClock(t *testing.T) {
	h := newFakeHost()
	err := NewSystemd(h).Start(context.Background(), node.Service{Name: "chrony", Argv: []string{"/usr/sbin/chronyd", "-d", "-x"}})
	if err == nil || !strings.Contains(err.Error(), "shares its clock") {
		t.Errorf("chronyd -x under systemd: %v", err)
	}
	if got := h.commands(); len(got) != 0 {
		t.Errorf("ran %q", got)
	}
}

func TestSystemdOwnUnit(t *testing.T) {
	h := newFakeHost()
	svc := node.Service{Name: "galera-health", Argv: []string{"/usr/local/lib/hastack/hastack-0a1b2c", "agent", "galera-health", "--listen", "10.0.0.11:9200"}, Env: []string{"A=50%"}}
	if err := NewSystemd(h).Start(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"install -d -m 0755 /var/log/hastack",
		"write /etc/systemd/system/hastack-galera-health.service",
		"systemctl daemon-reload",
		"systemctl enable --now hastack-galera-health.service",
	}
	if got := h.commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	unit := h.files["/etc/systemd/system/hastack-galera-health.service"]
	for _, line := range []string{
		`ExecStart="/usr/local/lib/hastack/hastack-0a1b2c" "agent" "galera-health" "--listen" "10.0.0.11:9200"`,
		`Environment="A=50%%"`,
		"Type=exec",
		"Restart=on-failure",
		"StandardOutput=append:/var/log/hastack/galera-health.log",
		"WantedBy=multi-user.target",
	} {
		if !strings.Contains(unit, line+"\n") {
			t.Errorf("unit lacks %q:\n%s", line, unit)
		}
	}
	if _, err := UnitFile(node.Service{Name: "x", Argv: []string{"/bin/x", "two words"}}); err == nil {
		t.Error("an argument with a space was accepted")
	}
}

func TestSystemdStopKillsAfterTimeout(t *testing.T) {
	h := newFakeHost()
	h.active["mariadb.service"] = "active"
	h.stopAfter["mariadb.service"] = -1 // ignores the stop signal
	s := NewSystemd(h)
	s.poll = time.Millisecond
	if err := s.Stop(context.Background(), "mariadb", 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	got := h.commands()
	want := []string{"systemctl stop --no-block mariadb.service", "systemctl kill --signal=SIGKILL mariadb.service"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran %q, want %q", got, want)
	}
	// Stopping what does not run is not an error and does nothing.
	h2 := newFakeHost()
	if err := NewSystemd(h2).Stop(context.Background(), "memcached", time.Second); err != nil || len(h2.commands()) != 0 {
		t.Errorf("stop of a stopped unit: %v, ran %q", err, h2.commands())
	}
}

func TestSystemdSignal(t *testing.T) {
	h := newFakeHost()
	s := NewSystemd(h)
	if err := s.Signal(context.Background(), "haproxy", syscall.SIGUSR2); err == nil {
		t.Error("signalled a unit that does not run")
	}
	h.active["haproxy.service"] = "active"
	if err := s.Signal(context.Background(), "haproxy", syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	if got := h.commands(); len(got) != 1 || got[0] != "systemctl kill --kill-who=main --signal=12 haproxy.service" {
		t.Errorf("ran %q", got)
	}
}

func TestParseShow(t *testing.T) {
	st := parseShow("mariadb", "LoadState=loaded\nActiveState=failed\nMainPID=0\nExecMainStartTimestamp=@1700000000\nExecMainExitTimestamp=@1700000100\nExecMainCode=2\nExecMainStatus=9\nExecStart={ path=/usr/sbin/mariadbd ; argv[]=/usr/sbin/mariadbd $_WSREP_NEW_CLUSTER ; ignore_errors=no }\n")
	if st.Running || st.ExitCode != -1 || st.Signal != "killed" || st.Exited.Unix() != 1700000100 || st.Started.Unix() != 1700000000 {
		t.Errorf("killed unit: %+v", st)
	}
	if len(st.Argv) != 2 || st.Argv[0] != "/usr/sbin/mariadbd" {
		t.Errorf("argv %q", st.Argv)
	}
	st = parseShow("x", "LoadState=not-found\nActiveState=inactive\n")
	if st.Running || st.ExitCode != 0 {
		t.Errorf("unknown unit: %+v", st)
	}
	st = parseShow("x", "LoadState=loaded\nActiveState=active\nMainPID=77\nExecMainStartTimestamp=@5\n")
	if !st.Running || st.PID != 77 {
		t.Errorf("running unit: %+v", st)
	}
}
