package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// A fake transport: nodes that answer every command check runs the way a
// healthy Debian 12 host does, before or after deploy, with faults that a
// test injects (ping delays, clock offsets, files). It never sleeps: the
// delays it injects are in what ping reports, which is what check measures.

// fakeCluster is a spec and its fake nodes.
type fakeCluster struct {
	c        *spec.Cluster
	nodes    map[string]*fakeNode
	deployed bool
	cookie   string
	pings    atomic.Int64
	// delay is added to every command, as a remote transport's round trip.
	delay time.Duration
	// rtt returns the round trips ping reports from one node to an
	// address; nil: 50 µs each. A sample < 0 is a lost reply.
	rtt func(from, to string, samples int) []time.Duration
	// ticks is a virtual clock shared by this machine (Options.Now) and
	// the nodes ('date'): each reading advances it by 1 µs, so a measured
	// offset is the injected one whatever the real scheduling.
	ticks atomic.Int64
}

// now reads the virtual clock.
func (fc *fakeCluster) now() time.Time {
	return time.Unix(1_800_000_000, 0).Add(time.Duration(fc.ticks.Add(1)) * time.Microsecond)
}

func newFakeCluster(t testing.TB, controllers, computes int, deployed bool) *fakeCluster {
	t.Helper()
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "fake", Controllers: controllers, Computes: computes, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	c, ps := spec.Parse(data)
	if ps.Err() != nil {
		t.Fatal(ps.Err())
	}
	fc := &fakeCluster{c: c, nodes: map[string]*fakeNode{}, deployed: deployed, cookie: "COOKIECOOKIECOOKIE"}
	for _, n := range c.Spec.Nodes {
		fn := &fakeNode{fc: fc, spec: n, files: map[string][]byte{}, services: map[string]node.ServiceState{}}
		fn.files["/proc/cpuinfo"] = []byte("processor\t: 0\nmodel name\t: Fake CPU\nflags\t\t: fpu vme hypervisor\n\nprocessor\t: 1\nflags\t\t: fpu vme hypervisor\n")
		fn.files["/proc/meminfo"] = []byte("MemTotal:       16318540 kB\nMemFree:         1000 kB\n")
		if deployed {
			fn.services["chrony"] = node.ServiceState{Name: "chrony", Running: true}
			if n.IsController() {
				for _, s := range []string{"memcached", "mariadb", "rabbitmq", "galera-health", "haproxy", "keepalived"} {
					fn.services[s] = node.ServiceState{Name: s, Running: true}
				}
				fn.files[rabbitmq.CookiePath] = []byte(fc.cookie)
			}
		}
		fc.nodes[n.Name] = fn
	}
	return fc
}

func (fc *fakeCluster) target() Target {
	nodes := map[string]node.Node{}
	for name, n := range fc.nodes {
		nodes[name] = n
	}
	return Target{Cluster: fc.c, Nodes: nodes, Secrets: secrets.NewValues(map[string]string{secrets.ErlangCookie: fc.cookie, secrets.RabbitAdminPassword: "x"})}
}

// options are quick fakes for the probes check makes from this machine.
func (fc *fakeCluster) options() Options {
	return Options{
		Now:      fc.now,
		TryLogin: func(context.Context, string, string) error { return fmt.Errorf("%w: access denied", ErrLoginRefused) },
		ProbeRabbit: func(context.Context, rabbitmq.ProbeOptions) (rabbitmq.Status, error) {
			var st rabbitmq.Status
			for _, n := range fc.c.Controllers() {
				st.Nodes = append(st.Nodes, rabbitmq.NodeStatus{Name: rabbitmq.NodeName(n), Running: true})
			}
			st.RunningNodes = len(st.Nodes)
			return st, nil
		},
	}
}

func (fc *fakeCluster) run(t testing.TB, o Options) Report {
	t.Helper()
	return Run(context.Background(), fc.target(), o)
}

type fakeNode struct {
	fc          *fakeCluster
	spec        spec.Node
	mu          sync.Mutex
	files       map[string][]byte
	services    map[string]node.ServiceState
	clockOffset time.Duration
	linkDown    string // an interface that is down
	extraListen string // more ss lines
	// resolves overrides what names resolve to: space-separated
	// addresses, "" for a name that does not resolve.
	resolves map[string]string
}

func (n *fakeNode) Name() string    { return n.spec.Name }
func (n *fakeNode) Address() string { return n.spec.Address }

func (n *fakeNode) WriteFile(context.Context, string, []byte, fs.FileMode, string) error {
	return errors.New("fake: read only")
}

func (n *fakeNode) ReadFile(_ context.Context, path string) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d, ok := n.files[path]; ok {
		return bytes.Clone(d), nil
	}
	return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
}

func (n *fakeNode) Services() node.Supervisor { return fakeSupervisor{n} }

func (n *fakeNode) Run(ctx context.Context, c node.Cmd) (node.Result, error) {
	if err := ctx.Err(); err != nil {
		return node.Result{}, err
	}
	if n.fc.delay > 0 {
		time.Sleep(n.fc.delay)
	}
	out, code := n.answer(c)
	res := node.Result{Stdout: []byte(out), ExitCode: code}
	if code != 0 {
		return res, &node.CommandError{Node: n.spec.Name, Argv: c.Argv, ExitCode: code, Output: out}
	}
	return res, nil
}

func (n *fakeNode) answer(c node.Cmd) (string, int) {
	a := c.Argv
	switch a[0] {
	case "nproc":
		return "8\n", 0
	case "date":
		at := n.fc.now().Add(n.clockOffset)
		return fmt.Sprintf("%d.%09d\n", at.Unix(), at.Nanosecond()), 0
	case "df":
		var b strings.Builder
		b.WriteString("Filesystem     Mounted on        Avail File\n")
		for _, p := range a[3:] {
			fmt.Fprintf(&b, "/dev/vda1      /            400000000000 %s\n", p)
		}
		return b.String(), 0
	case "ip":
		return n.ipAddr(), 0
	case "ss":
		return n.listeners(), 0
	case "sh": // the name resolution script: NAME=ADDRESS arguments
		var b strings.Builder
		for _, p := range a[4:] {
			name, want, _ := strings.Cut(p, "=")
			if got, ok := n.resolves[name]; ok && got != want {
				fmt.Fprintf(&b, "mismatch %s %s \n", name, got)
			}
		}
		fmt.Fprintf(&b, "checked %d\n", len(a[4:]))
		return b.String(), 0
	case "ping":
		return n.ping(a)
	case "chronyc":
		return n.chronyc(a[len(a)-1]), 0
	case "mariadb":
		if c.Stdin != nil {
			io.Copy(io.Discard, c.Stdin)
		}
		return fmt.Sprintf("wsrep_cluster_name\tfake\nwsrep_cluster_size\t%d\nwsrep_cluster_state_uuid\t1255490d-e843-11f1-9eb2-dfaf201d714c\nwsrep_cluster_status\tPrimary\n", len(n.fc.c.Controllers())), 0
	}
	return "fake: unknown command " + strings.Join(a, " "), 127
}

func (n *fakeNode) ipAddr() string {
	var parts []string
	for i, itf := range n.spec.Interfaces {
		flags := `"BROADCAST","MULTICAST","UP","LOWER_UP"`
		if itf.Name == n.linkDown {
			flags = `"BROADCAST","MULTICAST"`
		}
		parts = append(parts, fmt.Sprintf(`{"ifindex":%d,"ifname":%q,"flags":[%s],"addr_info":[{"family":"inet","local":%q,"prefixlen":22}]}`, i+2, itf.Name, flags, itf.Address))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func (n *fakeNode) listeners() string {
	var b strings.Builder
	if n.fc.deployed && n.spec.IsController() {
		a := n.spec.Address
		fmt.Fprintf(&b, "udp UNCONN 0 0 %s:123 0.0.0.0:* users:((\"chronyd\",pid=22,fd=3))\n", a)
		for _, l := range []struct {
			svc  string
			port int
			proc string
		}{{"memcached", 11211, "memcached"}, {"mariadb", 3306, "mariadbd"}, {"mariadb", 4567, "mariadbd"}, {"rabbitmq", 5672, "beam.smp"}, {"rabbitmq", 15672, "beam.smp"}, {"rabbitmq", 25672, "beam.smp"}, {"rabbitmq", 4369, "epmd"}, {"galera-health", 9200, "hastack-ec7ab7c"}, {"haproxy", 8404, "haproxy"}, {"haproxy", 10000, "haproxy"}} {
			if n.services[l.svc].Running {
				fmt.Fprintf(&b, "tcp LISTEN 0 128 %s:%d 0.0.0.0:* users:((%q,pid=9,fd=3))\n", a, l.port, l.proc)
			}
		}
		b.WriteString("tcp LISTEN 0 4096 127.0.0.1:4369 0.0.0.0:* users:((\"epmd\",pid=7,fd=3))\n")
	}
	b.WriteString(n.extraListen)
	return b.String()
}

// ping answers as iputils does, with the round trips fc.rtt injects.
func (n *fakeNode) ping(argv []string) (string, int) {
	n.fc.pings.Add(1)
	to := argv[len(argv)-1]
	count := 0
	for i, a := range argv {
		if a == "-c" {
			fmt.Sscan(argv[i+1], &count)
		}
	}
	var rtts []time.Duration
	if n.fc.rtt != nil {
		rtts = n.fc.rtt(n.spec.Name, to, count)
	} else {
		for range count {
			rtts = append(rtts, 50*time.Microsecond)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "PING %s (%s) 56(84) bytes of data.\n", to, to)
	got := 0
	for i, d := range rtts {
		if d < 0 {
			continue
		}
		got++
		fmt.Fprintf(&b, "64 bytes from %s: icmp_seq=%d ttl=64 time=%.3f ms\n", to, i+1, float64(d)/1e6)
	}
	fmt.Fprintf(&b, "\n--- %s ping statistics ---\n%d packets transmitted, %d received, %d%% packet loss, time 900ms\n", to, len(rtts), got, 100*(len(rtts)-got)/max(len(rtts), 1))
	if got == 0 {
		return b.String(), 1
	}
	return b.String(), 0
}

// chronyc answers in the document's hierarchy: controllers synchronised to
// the upstream server, every other node to the first controller.
func (n *fakeNode) chronyc(cmd string) string {
	c := n.fc.c
	var srcs []string
	ref, stratum := "", 2
	if n.spec.IsController() {
		for _, u := range c.Spec.NTP.Upstream {
			srcs = append(srcs, "^,*,"+u+",1,6,377,10,0.000010000,0.000010000,0.000050000")
			ref = u
		}
		for _, o := range c.Controllers() {
			if o.Name != n.spec.Name {
				srcs = append(srcs, "^,+,"+o.Address+",2,6,377,10,0.000002000,0.000002000,0.000080000")
			}
		}
	} else {
		stratum = 3
		for i, o := range c.Controllers() {
			state := "+"
			if i == 0 {
				state, ref = "*", o.Address
			}
			srcs = append(srcs, "^,"+state+","+o.Address+",2,6,377,10,0.000004000,0.000004000,0.000090000")
		}
	}
	if cmd == "sources" {
		return strings.Join(srcs, "\n") + "\n"
	}
	return fmt.Sprintf("0AEC0002,%s,%d,1795551024.437516094,0.000061587,0.000002191,0.000002191,-1.118,-0.001,33.074,0.000050265,0.001807039,1.8,Normal\n", ref, stratum)
}

type fakeSupervisor struct{ n *fakeNode }

func (s fakeSupervisor) Start(context.Context, node.Service) error { return errors.New("fake") }
func (s fakeSupervisor) Stop(context.Context, string, time.Duration) error {
	return errors.New("fake")
}
func (s fakeSupervisor) Signal(context.Context, string, syscall.Signal) error {
	return errors.New("fake")
}
func (s fakeSupervisor) Status(_ context.Context, name string) (node.ServiceState, error) {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	return s.n.services[name], nil
}
func (s fakeSupervisor) List(context.Context) ([]node.ServiceState, error) {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	var out []node.ServiceState
	for _, st := range s.n.services {
		out = append(out, st)
	}
	return out, nil
}
