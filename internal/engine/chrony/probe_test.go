package chrony

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// Output of chronyc 4.3 -c, captured on this project's test machine from
// chronyd -x instances on loopback:
const (
	// a server on its own clock ('local stratum 10', no source),
	capturedLocalTracking = "7F7F0101,,10,1795548890.571027340,0.000000000,0.000000000,0.000000000,0.000,0.000,0.000,0.000000000,0.000000000,0.0,Normal\n"
	capturedLocalSources  = ""
	// a client of that server, synchronised,
	capturedClientTracking = "7F000001,127.0.0.1,11,1795548900.253800339,-0.000001433,0.000000015,0.000000019,0.014,0.000,0.023,0.000003224,0.000000995,0.3,Normal\n"
	capturedClientSources  = "^,*,127.0.0.1,10,-2,377,1,0.000000219,0.000000234,0.000002911\n"
	// a client of three servers: one selected, one selectable, one that
	// never answered,
	capturedThreeTracking = "7F000002,127.0.0.2,9,1795548900.415262484,-0.000000934,0.000000014,0.000000198,0.050,0.001,0.148,0.000003309,0.000001185,0.3,Normal\n"
	capturedThreeSources  = "^,-,127.0.0.1,10,-2,377,1,0.000000041,0.000000041,0.000001933\n" +
		"^,*,127.0.0.2,8,-2,377,1,0.000000675,0.000000689,0.000002307\n" +
		"^,?,127.0.0.3,0,0,0,4294967295,0.000000000,0.000000000,0.000000000\n"
	// the same three while chronyd reselects (no '*': every selectable
	// source waits for an update),
	capturedReselectingSources = "^,-,127.0.0.1,10,-2,377,1,0.000000041,0.000000041,0.000001933\n" +
		"^,-,127.0.0.2,8,-2,377,1,0.000000675,0.000000689,0.000002307\n" +
		"^,?,127.0.0.3,0,0,0,4294967295,0.000000000,0.000000000,0.000000000\n"
	// and a client whose only server never answered.
	capturedUnsyncedTracking = "00000000,,0,0.000000000,0.000000000,0.000000000,0.000000000,0.000,0.000,0.000,1.000000000,1.000000000,0.0,Not synchronised\n"
	capturedUnsyncedSources  = "^,?,127.0.0.1,0,0,0,4294967295,0.000000000,0.000000000,0.000000000\n"
)

func TestParseTracking(t *testing.T) {
	got, err := ParseTracking(capturedClientTracking)
	if err != nil {
		t.Fatal(err)
	}
	want := Tracking{
		ReferenceID: "7F000001", ReferenceName: "127.0.0.1", Stratum: 11,
		RefTime: time.Unix(1795548900, 253800339).UTC(),
		// chronyc: "System time : 0.000001433 seconds fast of NTP time"
		SystemOffset: 1433 * time.Nanosecond,
		LastOffset:   15 * time.Nanosecond, RMSOffset: 19 * time.Nanosecond,
		FrequencyPPM: 0.014, ResidualPPM: 0, SkewPPM: 0.023,
		RootDelay: 3224 * time.Nanosecond, RootDispersion: 995 * time.Nanosecond,
		UpdateInterval: 300 * time.Millisecond, LeapStatus: "Normal",
	}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}

	un, err := ParseTracking(capturedUnsyncedTracking)
	if err != nil {
		t.Fatal(err)
	}
	if !un.RefTime.IsZero() || un.LeapStatus != LeapNotSynchronised || un.RootDispersion != time.Second {
		t.Errorf("never synchronised: %+v", un)
	}
}

func TestParseSources(t *testing.T) {
	got, err := ParseSources(capturedThreeSources)
	if err != nil {
		t.Fatal(err)
	}
	want := []Source{
		{Mode: "^", State: "-", Address: "127.0.0.1", Stratum: 10, PollLog2: -2, Reach: 0o377, LastRx: time.Second,
			Offset: 41 * time.Nanosecond, MeasuredOffset: 41 * time.Nanosecond, Error: 1933 * time.Nanosecond},
		{Mode: "^", State: "*", Address: "127.0.0.2", Stratum: 8, PollLog2: -2, Reach: 0o377, LastRx: time.Second,
			Offset: 675 * time.Nanosecond, MeasuredOffset: 689 * time.Nanosecond, Error: 2307 * time.Nanosecond},
		{Mode: "^", State: "?", Address: "127.0.0.3", LastRx: -1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if srcs, err := ParseSources(capturedLocalSources); err != nil || len(srcs) != 0 {
		t.Errorf("no sources: %v, %v", srcs, err)
	}
}

func TestParseRejectsOtherOutput(t *testing.T) {
	// What chronyc prints without -c, or from another version.
	if _, err := ParseTracking("Reference ID    : 7F000001 (localhost)\nStratum         : 11\n"); err == nil {
		t.Error("ParseTracking accepted the human format")
	}
	if _, err := ParseTracking(strings.Replace(capturedClientTracking, ",11,", ",eleven,", 1)); err == nil {
		t.Error("ParseTracking accepted a non-numeric stratum")
	}
	if _, err := ParseSources("MS Name/IP address         Stratum Poll Reach LastRx Last sample\n"); err == nil {
		t.Error("ParseSources accepted the human format")
	}
	if _, err := ParseSources(strings.Replace(capturedClientSources, ",377,", ",999,", 1)); err == nil {
		t.Error("ParseSources accepted a reach that is not octal")
	}
}

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		name, tracking, sources string
		maxOffset               time.Duration
		healthy, synchronised   bool
		reference, problem      string
	}{
		{"synchronised", capturedClientTracking, capturedClientSources, 0, true, true, "127.0.0.1", ""},
		{"three sources", capturedThreeTracking, capturedThreeSources, 50 * time.Millisecond, true, true, "127.0.0.2", ""},
		{"offset over the limit", capturedClientTracking, capturedClientSources, time.Microsecond, false, true, "127.0.0.1",
			"system clock 1.433µs off NTP time, more than the 1µs allowed"},
		{"own clock, no source", capturedLocalTracking, capturedLocalSources, 0, false, false, "local clock",
			"no time source configured: serving its own clock at stratum 10"},
		// A controller whose sources all went silent falls back to its
		// own clock (two captures combined: that state takes minutes to
		// reach for real).
		{"sources lost, own clock", capturedLocalTracking, capturedUnsyncedSources, 0, false, false, "local clock",
			"no source selected (0 of 1 reachable; 127.0.0.1 stratum 0 unusable): serving its own clock at stratum 10 (local/orphan mode)"},
		// Reselecting: chronyd keeps steering by its reference and marks
		// every source '-' until the new best one brings a sample (seen
		// for up to a minute on the lab, where the upstream server is
		// polled every 64 s; two captures combined). Its tracking says
		// synchronised, and so does 'chronyc waitsync'.
		{"reselecting, reference kept", capturedThreeTracking, capturedReselectingSources, 0, true, true, "127.0.0.2", ""},
		{"source never answered", capturedUnsyncedTracking, capturedUnsyncedSources, 0, false, false, "",
			"not synchronised: none of the 1 sources answers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ParseTracking(tc.tracking)
			if err != nil {
				t.Fatal(err)
			}
			srcs, err := ParseSources(tc.sources)
			if err != nil {
				t.Fatal(err)
			}
			st := judge("n1", tr, srcs, tc.maxOffset)
			if st.Healthy != tc.healthy || st.Synchronised != tc.synchronised || st.Reference != tc.reference || st.Problem != tc.problem {
				t.Errorf("got healthy=%v synchronised=%v reference=%q problem=%q\nwant healthy=%v synchronised=%v reference=%q problem=%q",
					st.Healthy, st.Synchronised, st.Reference, st.Problem, tc.healthy, tc.synchronised, tc.reference, tc.problem)
			}
		})
	}
}

// localNode is this machine as a node.Node: just enough (Run) for the probe.
type localNode struct{}

func (localNode) Name() string    { return "local" }
func (localNode) Address() string { return "127.0.0.1" }
func (localNode) Run(ctx context.Context, c node.Cmd) (node.Result, error) {
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := node.Result{Stdout: []byte(stdout.String()), Stderr: []byte(stderr.String())}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		res.ExitCode = exit.ExitCode()
		out := strings.TrimSpace(stderr.String())
		if out == "" {
			out = strings.TrimSpace(stdout.String())
		}
		return res, &node.CommandError{Node: "local", Argv: c.Argv, ExitCode: res.ExitCode, Output: out}
	}
	return res, err
}
func (localNode) WriteFile(context.Context, string, []byte, fs.FileMode, string) error {
	return errors.ErrUnsupported
}
func (localNode) ReadFile(context.Context, string) ([]byte, error) { return nil, errors.ErrUnsupported }
func (localNode) Services() node.Supervisor                        { return nil }

// chronyd is one real chronyd -x (never steering this machine's clock) in a
// folder of its own.
type chronyd struct {
	socket string
	cmd    *exec.Cmd
	exited chan struct{}
}

func startChronyd(t *testing.T, name, config string) *chronyd {
	t.Helper()
	// chronyd refuses a command socket whose folder is not owned by its
	// user (_chrony, after dropping root) or is open to others: the folder
	// must be _chrony's and 0770 at most, as /run/chrony is on a node.
	dir, err := os.MkdirTemp("", "hastack-chrony-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	u, err := user.Lookup("_chrony")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o770); err != nil {
		t.Fatal(err)
	}
	c := &chronyd{socket: filepath.Join(dir, "chronyd.sock"), exited: make(chan struct{})}
	conf := filepath.Join(dir, "chrony.conf")
	config += fmt.Sprintf("\ncmdport 0\nbindcmdaddress %s\npidfile %s\n", c.socket, filepath.Join(dir, "chronyd.pid"))
	if err := os.WriteFile(conf, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// -x: never touch the clock (the lab's way too); -d: stay in the
	// foreground and log to stderr.
	c.cmd = exec.Command("chronyd", "-x", "-d", "-f", conf)
	var out strings.Builder
	c.cmd.Stdout, c.cmd.Stderr = &out, &out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("chronyd %s log:\n%s", name, out.String())
		}
	})
	// Up when the command socket answers.
	for deadline := time.Now().Add(20 * time.Second); ; {
		if exec.Command("chronyc", "-h", c.socket, "-c", "tracking").Run() == nil {
			return c
		}
		select {
		case <-c.exited:
			t.Fatalf("chronyd %s exited: %v\n%s", name, c.cmd.ProcessState, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("chronyd %s: command socket does not answer", name)
		}
	}
}

func (c *chronyd) stop() {
	select {
	case <-c.exited:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func TestIntegrationProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts two real chronyd -x on loopback; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root (chronyd starts as root); run as root, or use -short")
	}
	for _, bin := range []string{"chronyd", "chronyc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed: run scripts/install-deps", bin)
		}
	}
	port := freeUDPPort(t)
	// A controller cut off from upstream: its own clock at the orphan
	// stratum, serving NTP on loopback only.
	server := startChronyd(t, "server", fmt.Sprintf("local stratum %d\nallow 127.0.0.1\nbindaddress 127.0.0.1\nport %d\n", OrphanStratum, port))
	// A node following it. minpoll/maxpoll -2 (4 polls a second) is a
	// test-only speed-up; the rendered configuration relies on iburst.
	client := startChronyd(t, "client", fmt.Sprintf("server 127.0.0.1 port %d iburst minpoll -2 maxpoll -2\nport 0\n", port))

	ctx := context.Background()
	var st Status
	var err error
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, err = Probe(ctx, localNode{}, ProbeOptions{Socket: client.socket, MaxOffset: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if st.Healthy || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !st.Healthy || !st.Synchronised || st.Reference != "127.0.0.1" || st.Stratum != OrphanStratum+1 ||
		len(st.Sources) != 1 || !st.Sources[0].Selected() || st.LeapStatus != "Normal" {
		t.Errorf("client: %+v", st)
	}

	st, err = Probe(ctx, localNode{}, ProbeOptions{Socket: server.socket})
	if err != nil {
		t.Fatal(err)
	}
	if st.Healthy || st.Synchronised || st.Reference != "local clock" || st.Stratum != OrphanStratum || st.Problem == "" {
		t.Errorf("server on its own clock: %+v", st)
	}

	server.stop()
	if st, err := Probe(ctx, localNode{}, ProbeOptions{Socket: server.socket}); err == nil || st.Healthy || st.Problem == "" {
		t.Errorf("stopped chronyd: %+v, %v; want an error", st, err)
	}
}
