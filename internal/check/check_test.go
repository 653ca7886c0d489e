package check

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/spec"
)

func results(r Report) map[string]Result {
	m := map[string]Result{}
	for _, x := range r.Results {
		m[x.Node+"/"+x.Check] = x
	}
	return m
}

func wantStatus(t *testing.T, m map[string]Result, st Status, keys ...string) {
	t.Helper()
	for _, k := range keys {
		x, ok := m[k]
		if !ok {
			t.Errorf("no result %s", k)
			continue
		}
		if x.Status != st {
			t.Errorf("%s: %s (%s; limit %s), want %s", k, x.Status, x.Value, x.Limit, st)
		}
	}
}

func failing(r Report) []string {
	var out []string
	for _, x := range r.Results {
		if x.Status == Fail {
			out = append(out, x.Node+"/"+x.Check+": "+x.Value)
		}
	}
	return out
}

func TestParsePing(t *testing.T) {
	out := `PING 10.77.0.12 (10.77.0.12) 56(84) bytes of data.
64 bytes from 10.77.0.12: icmp_seq=1 ttl=64 time=0.284 ms
64 bytes from 10.77.0.12: icmp_seq=2 ttl=64 time=0.061 ms
64 bytes from 10.77.0.12: icmp_seq=2 ttl=64 time=0.070 ms (DUP!)
64 bytes from 10.77.0.12: icmp_seq=4 ttl=64 time=2.5 ms

--- 10.77.0.12 ping statistics ---
4 packets transmitted, 3 received, +1 duplicates, 25% packet loss, time 938ms
rtt min/avg/max/mdev = 0.061/0.950/2.500/1.0 ms
`
	r, err := parsePing(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{284 * time.Microsecond, 61 * time.Microsecond, 2500 * time.Microsecond}
	if r.Sent != 4 || !reflect.DeepEqual(r.RTTs, want) {
		t.Errorf("parsePing: sent %d, rtts %v; want 4, %v", r.Sent, r.RTTs, want)
	}
	if _, err := parsePing("ping: connect: Network is unreachable\n"); err == nil {
		t.Error("parsePing accepted output without statistics")
	}
}

func TestSummarise(t *testing.T) {
	ms := func(v ...float64) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x*float64(time.Millisecond)))
		}
		return out
	}
	for _, tc := range []struct {
		in       []time.Duration
		p50, max time.Duration
	}{
		{nil, 0, 0},
		{ms(1), ms(1)[0], ms(1)[0]},
		{ms(3, 1, 2), ms(2)[0], ms(3)[0]},
		// Nearest rank: of an even count, the lower middle sample.
		{ms(4, 1, 3, 2), ms(2)[0], ms(4)[0]},
		{ms(0.05, 0.05, 9, 0.05, 0.05), ms(0.05)[0], ms(9)[0]},
	} {
		if got := summarise(tc.in); got.P50 != tc.p50 || got.Max != tc.max {
			t.Errorf("summarise(%v) = %+v, want p50 %v max %v", tc.in, got, tc.p50, tc.max)
		}
	}
}

// TestJudgePairInjectedDelay holds pairs with injected round trips to the
// default limit: a median over it fails, a spike or a lost reply warns.
func TestJudgePairInjectedDelay(t *testing.T) {
	limit := spec.DefaultMaxLatency
	us := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Microsecond)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		r    pingResult
		want Status
	}{
		{"lan", pingResult{Sent: 5, RTTs: us(50, 60, 55, 52, 51)}, OK},
		{"at the limit", pingResult{Sent: 3, RTTs: us(2000, 2000, 2000)}, OK},
		{"over the limit", pingResult{Sent: 5, RTTs: us(2100, 2500, 2300, 2200, 2400)}, Fail},
		{"mostly over", pingResult{Sent: 5, RTTs: us(50, 3000, 3000, 60, 3000)}, Fail},
		{"one spike", pingResult{Sent: 5, RTTs: us(50, 60, 9000, 52, 51)}, Warn},
		{"lossy", pingResult{Sent: 5, RTTs: us(50, 60, 52)}, Warn},
		{"no reply", pingResult{Sent: 5}, Fail},
	} {
		if got, v := judgePair(tc.r, limit); got != tc.want {
			t.Errorf("%s: %s (%s), want %s", tc.name, got, v, tc.want)
		}
	}
}

// TestLatencyMatrixInjectedDelay runs the whole check over the fake
// transport with a delay injected on one direction of one pair (this
// kernel has no netem, so the lab cannot add latency for real).
func TestLatencyMatrixInjectedDelay(t *testing.T) {
	fc := newFakeCluster(t, 3, 1, true)
	fc.rtt = func(from, to string, n int) []time.Duration {
		var out []time.Duration
		for i := range n {
			switch {
			case from == "ctl1" && to == "10.77.0.12":
				out = append(out, 3*time.Millisecond) // a slow path one way
			case from == "ctl3" && to == "10.77.0.11" && i == 0:
				out = append(out, 5*time.Millisecond) // one spike
			case from == "ctl2" && to == "10.77.0.13":
				out = append(out, -1) // every reply lost
			default:
				out = append(out, 80*time.Microsecond)
			}
		}
		return out
	}
	r := fc.run(t, fc.options())
	m := results(r)
	wantStatus(t, m, Fail, "ctl1/latency ctl2", "ctl2/latency ctl3")
	wantStatus(t, m, Warn, "ctl3/latency ctl1")
	wantStatus(t, m, OK, "ctl2/latency ctl1", "ctl1/latency ctl3", "ctl3/latency ctl2")
	if v := m["ctl1/latency ctl2"].Value; !strings.Contains(v, "p50 3.000 ms") {
		t.Errorf("latency value %q does not give the median", v)
	}
	if _, ok := m["cmp1/latency ctl1"]; ok {
		t.Error("latency is measured between controllers only")
	}
	if got := fc.pings.Load(); got != 6 {
		t.Errorf("%d ping runs for 3 controllers, want 6 (every ordered pair)", got)
	}
}

func TestHealthyFakeBeforeAndAfterDeploy(t *testing.T) {
	for _, deployed := range []bool{false, true} {
		fc := newFakeCluster(t, 3, 2, deployed)
		r := fc.run(t, fc.options())
		if r.Failed() {
			t.Errorf("deployed=%v: failures: %v", deployed, failing(r))
		}
		m := results(r)
		if deployed {
			wantStatus(t, m, OK, "ctl1/ntp", "cmp2/ntp", "ctl2/galera cluster", "ctl3/erlang cookie", "ctl1/ports", "cluster/rabbitmq guest")
			if v := m["ctl1/ports"].Value; !strings.Contains(v, "11 held by their engines") {
				t.Errorf("ports: %q", v)
			}
		} else {
			wantStatus(t, m, Warn, "ctl1/ntp", "cmp1/ntp")
			wantStatus(t, m, OK, "ctl1/ports", "ctl1/galera cluster", "ctl1/erlang cookie", "ctl1/database password", "cluster/rabbitmq guest")
		}
		// Every compute node is a VM without vmx/svm in the fake.
		wantStatus(t, m, Warn, "cmp1/virtualisation")
		wantStatus(t, m, OK, "ctl1/virtualisation")
	}
}

// TestClockOffsetInjected: before deploy clocks are read through the
// transport; a node 80 ms ahead fails against the 50 ms limit, and the
// controllers, measured against each other, do not.
func TestClockOffsetInjected(t *testing.T) {
	fc := newFakeCluster(t, 3, 1, false)
	fc.nodes["cmp1"].clockOffset = 80 * time.Millisecond
	m := results(fc.run(t, fc.options()))
	wantStatus(t, m, Fail, "cmp1/clock offset")
	wantStatus(t, m, OK, "ctl1/clock offset", "ctl2/clock offset")
	// The virtual clock (Options.Now) makes the reading exact to within
	// the few microseconds other nodes' readings advance it meanwhile.
	v := m["cmp1/clock offset"].Value
	var ms float64
	if _, err := fmt.Sscanf(v, "+%f ms", &ms); err != nil || ms < 79.9 || ms > 80.1 {
		t.Errorf("clock offset value %q, want +80 ms", v)
	}
}

func TestJudgeOffsets(t *testing.T) {
	limit := 50 * time.Millisecond
	for _, tc := range []struct {
		offs []offsetTo
		want Status
	}{
		{[]offsetTo{{Controller: "a", Offset: time.Millisecond, Bound: time.Millisecond}}, OK},
		{[]offsetTo{{Controller: "a", Offset: -60 * time.Millisecond}}, Fail},
		{[]offsetTo{{Controller: "a", Offset: 80 * time.Millisecond, Bound: 20 * time.Millisecond}}, Fail},
		// Within the limit, but the error could put it over.
		{[]offsetTo{{Controller: "a", Offset: 45 * time.Millisecond, Bound: 10 * time.Millisecond}}, Warn},
		// Over the limit, but not by more than the error: cannot tell.
		{[]offsetTo{{Controller: "a", Offset: -916 * time.Millisecond, Bound: 916 * time.Millisecond}}, Warn},
		{[]offsetTo{{Controller: "a", Offset: time.Millisecond}, {Controller: "b", Err: "not read"}}, Warn},
		{[]offsetTo{{Controller: "a", Err: "not read"}}, Warn},
	} {
		if got, v := judgeOffsets(tc.offs, limit); got != tc.want {
			t.Errorf("%+v: %s (%s), want %s", tc.offs, got, v, tc.want)
		}
	}
}

func TestSampleFrom(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := sampleFrom(t0, t0.Add(10*time.Millisecond), t0.Add(25*time.Millisecond))
	if s.Offset != 20*time.Millisecond || s.Bound != 5*time.Millisecond {
		t.Errorf("sampleFrom = %+v, want offset 20ms bound 5ms", s)
	}
	if _, err := parseEpoch("1795551024.4375"); err == nil {
		t.Error("parseEpoch accepted a short fraction")
	}
	at, err := parseEpoch("1795551024.437516094\n")
	if err != nil || at.UnixNano() != 1795551024437516094 {
		t.Errorf("parseEpoch = %v, %v", at, err)
	}
}

func TestNICDownAndHardwareMinimums(t *testing.T) {
	fc := newFakeCluster(t, 3, 1, false)
	fc.nodes["cmp1"].linkDown = "eth1"
	fc.c.Spec.Requirements.Controller.MemoryGB = 64 // the fake has 16.7 GB
	m := results(fc.run(t, fc.options()))
	wantStatus(t, m, Fail, "cmp1/nics", "ctl1/memory", "ctl3/memory")
	wantStatus(t, m, OK, "ctl1/nics", "cmp1/memory", "ctl1/cores", "ctl1/disk")
	if v := m["cmp1/nics"].Value; !strings.Contains(v, "eth1 (provider) down") {
		t.Errorf("nics value %q", v)
	}
	if v := m["ctl1/memory"].Value; v != "16.7 GB" {
		t.Errorf("memory value %q", v)
	}
}

func TestPortsAndListeners(t *testing.T) {
	// Before deploy, a program on memcached's port.
	fc := newFakeCluster(t, 3, 1, false)
	fc.nodes["ctl2"].extraListen = "tcp LISTEN 0 5 0.0.0.0:11211 0.0.0.0:* users:((\"socat\",pid=5,fd=5))\n"
	m := results(fc.run(t, fc.options()))
	wantStatus(t, m, Fail, "ctl2/ports")
	wantStatus(t, m, OK, "ctl1/ports")

	// After deploy: memcached on UDP and on every address.
	fc = newFakeCluster(t, 3, 1, true)
	fc.nodes["ctl2"].extraListen = "udp UNCONN 0 0 10.77.0.12:11211 0.0.0.0:* users:((\"memcached\",pid=5,fd=5))\n"
	fc.nodes["ctl3"].extraListen = "tcp LISTEN 0 5 0.0.0.0:11211 0.0.0.0:* users:((\"memcached\",pid=5,fd=5))\n"
	// And mariadb stopped on ctl1.
	fc.nodes["ctl1"].services["mariadb"] = node.ServiceState{Name: "mariadb"}
	m = results(fc.run(t, fc.options()))
	wantStatus(t, m, Fail, "ctl2/listeners", "ctl3/listeners", "ctl1/ports")
	wantStatus(t, m, OK, "ctl1/listeners", "ctl2/ports")
	if v := m["ctl1/ports"].Value; !strings.Contains(v, "mariadb is deployed but not running") {
		t.Errorf("ports value %q", v)
	}
}

func TestCookieAndGaleraAndNames(t *testing.T) {
	fc := newFakeCluster(t, 3, 1, true)
	fc.nodes["ctl3"].files[rabbitmq.CookiePath] = []byte("ANOTHERCOOKIE")
	delete(fc.nodes["ctl2"].files, rabbitmq.CookiePath)
	r := fc.run(t, fc.options())
	m := results(r)
	wantStatus(t, m, Fail, "ctl3/erlang cookie", "ctl2/erlang cookie")
	wantStatus(t, m, OK, "ctl1/erlang cookie")
	for _, x := range r.Results {
		if strings.Contains(x.Value+x.Detail+x.Limit, "COOKIE") {
			t.Errorf("%s/%s prints a cookie: %q", x.Node, x.Check, x.Value)
		}
	}
}

func TestJudgeGaleraCluster(t *testing.T) {
	c := newFakeCluster(t, 3, 0, true).c
	f := &facts{nodes: map[string]*nodeFacts{}, controllers: c.Controllers()}
	uuids := map[string]string{"ctl1": "aaaaaaaa-1", "ctl2": "aaaaaaaa-1", "ctl3": "bbbbbbbb-2"}
	for _, n := range c.Controllers() {
		nf := &nodeFacts{Spec: n, Services: map[string]node.ServiceState{"mariadb": {Name: "mariadb", Running: true}}}
		nf.Galera = measured(galeraFacts{Name: "fake", UUID: uuids[n.Name], Size: 3, Status: "Primary"}, nil)
		f.nodes[n.Name] = nf
	}
	f.nodes["ctl2"].Galera.V.Name = "other"
	want := map[string]Status{"ctl1": OK, "ctl2": Fail, "ctl3": Fail}
	for name, st := range want {
		if r := judgeGaleraCluster(c, f, f.nodes[name]); r.Status != st {
			t.Errorf("%s: %s (%s), want %s", name, r.Status, r.Value, st)
		}
	}
	// Not deployed: nothing to compare.
	nf := &nodeFacts{Spec: c.Spec.Nodes[0], Services: map[string]node.ServiceState{}}
	if r := judgeGaleraCluster(c, f, nf); r.Status != OK || !strings.Contains(r.Value, "not deployed") {
		t.Errorf("not deployed: %+v", r)
	}
}

func TestSizeRules(t *testing.T) {
	for _, tc := range []struct {
		n            int
		galera       Status
		quorum, mirr Status
	}{
		{1, Warn, Warn, Warn},
		{2, Fail, Fail, Warn},
		{3, OK, OK, OK},
		{4, Fail, OK, OK},
		{5, OK, OK, OK},
	} {
		if got, v := sizeRule(tc.n); got != tc.galera {
			t.Errorf("galera %d: %s (%s), want %s", tc.n, got, v, tc.galera)
		}
		if got, v := rabbitSizeRule(tc.n, spec.QueueQuorum); got != tc.quorum {
			t.Errorf("rabbitmq quorum %d: %s (%s), want %s", tc.n, got, v, tc.quorum)
		}
		if got, v := rabbitSizeRule(tc.n, spec.QueueMirrored); got != tc.mirr {
			t.Errorf("rabbitmq mirrored %d: %s (%s), want %s", tc.n, got, v, tc.mirr)
		}
	}
}

func TestDatabasePasswordAndGuest(t *testing.T) {
	fc := newFakeCluster(t, 3, 1, true)
	o := fc.options()
	o.TryLogin = func(_ context.Context, addr, user string) error {
		if addr == "10.77.0.12:3306" && user == "" {
			return nil // an anonymous account let in
		}
		if addr == "10.77.0.13:3306" {
			return errors.New("dial tcp: connection refused")
		}
		return fmt.Errorf("%w: denied", ErrLoginRefused)
	}
	probe := o.ProbeRabbit
	o.ProbeRabbit = func(ctx context.Context, po rabbitmq.ProbeOptions) (rabbitmq.Status, error) {
		st, err := probe(ctx, po)
		st.GuestUser = true
		return st, err
	}
	m := results(fc.run(t, o))
	wantStatus(t, m, Fail, "ctl2/database password", "cluster/rabbitmq guest")
	wantStatus(t, m, OK, "ctl1/database password")
	wantStatus(t, m, Warn, "ctl3/database password")
}

func TestParsers(t *testing.T) {
	ci, err := parseCPUInfo("processor : 0\nmodel name : X\nflags : fpu vmx hypervisor\n\nprocessor : 1\nflags : fpu svm\n", nil)
	if err != nil || !ci.VMX || !ci.Hypervisor || ci.SVM || ci.Model != "X" {
		t.Errorf("parseCPUInfo = %+v, %v", ci, err)
	}
	if mem, err := parseMemTotal("MemTotal:       24684092 kB\n", nil); err != nil || mem != 24684092*1024 {
		t.Errorf("parseMemTotal = %d, %v", mem, err)
	}
	if n, err := parseNproc("4\n", nil); err != nil || n != 4 {
		t.Errorf("parseNproc = %d, %v", n, err)
	}
	fss, err := parseDF("Filesystem Mounted on Avail File\n/dev/vda / 100 /var/lib/mysql\n/dev/vda / 100 /var/lib/rabbitmq\n/dev/vdb /srv 7 /srv/x\n")
	want := []diskFree{{Source: "/dev/vda", Mount: "/", Avail: 100, Paths: []string{"/var/lib/mysql", "/var/lib/rabbitmq"}}, {Source: "/dev/vdb", Mount: "/srv", Avail: 7, Paths: []string{"/srv/x"}}}
	if err != nil || !reflect.DeepEqual(fss, want) {
		t.Errorf("parseDF = %+v, %v", fss, err)
	}
	links, err := parseIPAddr(`[{"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"addr_info":[{"family":"inet","local":"127.0.0.1"}]},{"ifname":"eth1","flags":["BROADCAST","UP"],"addr_info":[{"family":"inet","local":"10.78.0.11"}]}]`)
	if err != nil || len(links) != 2 || !links[0].Up || links[1].Up || links[1].Addrs[0] != "10.78.0.11" {
		t.Errorf("parseIPAddr = %+v, %v", links, err)
	}
	ls := parseListeners(`udp UNCONN 0 0 10.77.0.11:123 0.0.0.0:* users:(("chronyd",pid=22,fd=3))
tcp LISTEN 0 4096 [::1]:4369 [::]:* users:(("epmd",pid=711,fd=4))
udp UNCONN 0 0 0.0.0.0%lo:53 0.0.0.0:*
tcp LISTEN 0 1024 *:11211 *:* users:(("memcached",pid=23,fd=23))
`)
	wantL := []listener{{"udp", "10.77.0.11", 123, "chronyd"}, {"tcp", "::1", 4369, "epmd"}, {"udp", "0.0.0.0", 53, ""}, {"tcp", "*", 11211, "memcached"}}
	if !reflect.DeepEqual(ls, wantL) {
		t.Errorf("parseListeners = %+v", ls)
	}
	nodes := []spec.Node{{Name: "ctl1", Address: "10.77.0.11"}, {Name: "ctl2", Address: "10.77.0.12"}, {Name: "cmp1", Address: "10.77.1.1"}}
	res, err := parseResolve("mismatch ctl1 10.77.0.11 127.0.1.1 \nmismatch cmp1 \nchecked 3\n", nodes)
	wantRes := map[string]resolution{
		"ctl1": {Addrs: []string{"10.77.0.11", "127.0.1.1"}, Found: true},
		"ctl2": {Addrs: []string{"10.77.0.12"}, Found: true},
		"cmp1": {Addrs: []string{}, Found: false},
	}
	if err != nil || !reflect.DeepEqual(res, wantRes) {
		t.Errorf("parseResolve = %+v, %v", res, err)
	}
	if _, err := parseResolve("checked 2\n", nodes); err == nil {
		t.Error("parseResolve accepted a run that checked 2 of 3 names")
	}
	g := parseGaleraQuery("wsrep_cluster_name\tdemo\nwsrep_cluster_size\t3\nwsrep_cluster_state_uuid\tu-1\nwsrep_cluster_status\tPrimary\npasswordless\t''@'%'\n")
	if !reflect.DeepEqual(g, galeraFacts{Name: "demo", UUID: "u-1", Size: 3, Status: "Primary", Passwordless: []string{"''@'%'"}}) {
		t.Errorf("parseGaleraQuery = %+v", g)
	}
	if v, ok := majority(map[string]string{"a": "x", "b": "x", "c": "y"}); v != "x" || !ok {
		t.Errorf("majority = %q, %v", v, ok)
	}
	if _, ok := majority(map[string]string{"a": "x", "b": "y"}); ok {
		t.Error("majority of a tie is unambiguous")
	}
}

func TestNamesThroughTheFake(t *testing.T) {
	fc := newFakeCluster(t, 2, 1, false)
	fc.nodes["ctl1"].resolves = map[string]string{"ctl2": "10.77.0.12 10.77.0.99"}
	fc.nodes["cmp1"].resolves = map[string]string{"ctl1": ""}
	m := results(fc.run(t, fc.options()))
	wantStatus(t, m, Fail, "ctl1/names", "cmp1/names")
	wantStatus(t, m, OK, "ctl2/names")
	if v := m["ctl1/names"].Value; v != "ctl2 -> 10.77.0.12, 10.77.0.99 (want 10.77.0.12 only)" {
		t.Errorf("ctl1/names: %q", v)
	}
	if v := m["cmp1/names"].Value; v != "ctl1 does not resolve" {
		t.Errorf("cmp1/names: %q", v)
	}
}

// TestResolveScript runs the script that compares names on a node under
// sh, with a getent that answers as glibc's does for /etc/hosts entries.
func TestResolveScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	getent := `#!/bin/sh
case "$2" in
ctl1) printf '10.77.0.11      STREAM ctl1\n10.77.0.11      DGRAM\n10.77.0.11      RAW\n' ;;
ctl2) printf '10.77.0.12      STREAM ctl2\n10.77.0.12      DGRAM\n10.77.0.99      STREAM\n10.77.0.99      DGRAM\n' ;;
*) exit 2 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "getent"), []byte(getent), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sh, "-c", resolveScript, "sh", "ctl1=10.77.0.11", "ctl2=10.77.0.12", "cmp1=10.77.1.1")
	cmd.Env = []string{"PATH=" + dir + ":" + os.Getenv("PATH")}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	nodes := []spec.Node{{Name: "ctl1", Address: "10.77.0.11"}, {Name: "ctl2", Address: "10.77.0.12"}, {Name: "cmp1", Address: "10.77.1.1"}}
	res, err := parseResolve(string(out), nodes)
	if err != nil {
		t.Fatal(err)
	}
	if !res["ctl1"].Found || len(res["ctl1"].Addrs) != 1 || !reflect.DeepEqual(res["ctl2"].Addrs, []string{"10.77.0.12", "10.77.0.99"}) || res["cmp1"].Found {
		t.Errorf("script output %q parsed as %+v", out, res)
	}
}

func TestDiskFallsBackToParent(t *testing.T) {
	n := &dfNode{fakeNode: &fakeNode{}}
	g := &gatherer{}
	fss, err := g.diskFree(t.Context(), n, []string{"/var/lib/mysql", "/var/lib/rabbitmq"})
	if err != nil || len(fss) != 1 || !reflect.DeepEqual(fss[0].Paths, []string{"/var/lib", "/var/lib/rabbitmq"}) {
		t.Errorf("diskFree = %+v, %v", fss, err)
	}
}

// dfNode has no /var/lib/mysql yet.
type dfNode struct{ *fakeNode }

func (d *dfNode) Run(ctx context.Context, c node.Cmd) (node.Result, error) {
	var b strings.Builder
	b.WriteString("Filesystem Mounted on Avail File\n")
	missing := false
	for _, p := range c.Argv[3:] {
		if p == "/var/lib/mysql" {
			missing = true
			continue
		}
		fmt.Fprintf(&b, "/dev/vda / 100 %s\n", p)
	}
	res := node.Result{Stdout: []byte(b.String())}
	if missing {
		res.ExitCode = 1
		return res, &node.CommandError{Argv: c.Argv, ExitCode: 1, Output: "df: /var/lib/mysql: No such file or directory"}
	}
	return res, nil
}

// TestNodeWithoutConnection: a spec node the target has no connection to
// fails every check it has, each saying so, and the others are unaffected.
func TestNodeWithoutConnection(t *testing.T) {
	fc := newFakeCluster(t, 3, 1, true)
	tg := fc.target()
	delete(tg.Nodes, "ctl3")
	r := Run(context.Background(), tg, fc.options())
	m := results(r)
	for k, x := range m {
		switch {
		case strings.HasPrefix(k, "ctl3/") && k != "ctl3/virtualisation" && x.Status != Fail:
			t.Errorf("%s: %s (%s), want fail", k, x.Status, x.Value)
		case strings.HasPrefix(k, "ctl3/") && !strings.Contains(x.Value, "no connection to node ctl3"):
			t.Errorf("%s: %q does not say why", k, x.Value)
		}
	}
	// ctl3 itself may be fine: the others still reach it.
	wantStatus(t, m, OK, "ctl1/latency ctl3", "ctl1/clock offset", "ctl1/ports", "cmp1/names")
}

func TestWriteText(t *testing.T) {
	r := Report{Results: []Result{
		{Node: "cluster", Check: "galera size", Status: OK, Value: "3", Limit: "odd"},
		{Node: "ctl1", Check: "memory", Status: Fail, Value: "8.0 GB", Limit: ">= 12 GB", Detail: "why"},
		{Node: "ctl1", Check: "names", Status: OK, Value: "all", Limit: "unique", Detail: "not shown when ok"},
		{Node: "cmp1", Check: "virtualisation", Status: Warn, Value: "VM", Limit: "vmx"},
	}, Duration: 1234 * time.Millisecond}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	want := []string{
		"NODE     CHECK           STATUS  VALUE   LIMIT",
		"cluster  galera size     ok      3       odd",
		"ctl1     memory          FAIL    8.0 GB  >= 12 GB",
		"                                   why",
		"         names           ok      all     unique",
		"cmp1     virtualisation  warn    VM      vmx",
		"4 checks: 2 ok, 1 warn, 1 fail in 1.234s",
	}
	for i := range lines {
		lines[i] = strings.TrimRight(lines[i], " ")
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("WriteText:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if !r.Failed() {
		t.Error("a report with a failure is not Failed")
	}
}
