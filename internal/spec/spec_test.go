package spec

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// expectations reads the '# expect: ...' and '# expect-warnings: N' header
// lines of a testdata file.
func expectations(t *testing.T, data []byte) (msgs []string, warnings int) {
	t.Helper()
	warnings = -1
	for _, line := range strings.Split(string(data), "\n") {
		if s, ok := strings.CutPrefix(line, "# expect: "); ok {
			msgs = append(msgs, s)
		}
		if s, ok := strings.CutPrefix(line, "# expect-warnings: "); ok {
			n, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("bad expect-warnings %q", s)
			}
			warnings = n
		}
	}
	return msgs, warnings
}

func hasProblem(ps Problems, want string) bool {
	for _, p := range ps {
		if strings.Contains(p.String(), want) {
			return true
		}
	}
	return false
}

func TestSpecFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			msgs, nwarn := expectations(t, data)
			c, ps, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.HasPrefix(name, "valid-"):
				if ps.Err() != nil {
					t.Fatalf("valid spec rejected: %v", ps.Err())
				}
				if c == nil {
					t.Fatal("valid spec returned no cluster")
				}
				for _, m := range msgs {
					if !hasProblem(ps.Warnings(), m) {
						t.Errorf("missing warning %q; got:\n%v", m, ps)
					}
				}
				// Every warning is pinned: named by an expect line, and
				// counted, so that a new or lost warning fails here.
				for _, w := range ps.Warnings() {
					if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(w.String(), m) }) {
						t.Errorf("warning not pinned by an '# expect:' line: %s", w)
					}
				}
				if nwarn < 0 {
					t.Fatal("valid testdata needs '# expect-warnings: N'")
				}
				if len(ps.Warnings()) != nwarn {
					t.Errorf("got %d warnings, want %d:\n%v", len(ps.Warnings()), nwarn, ps.Warnings())
				}
			case strings.HasPrefix(name, "invalid-"):
				if ps.Err() == nil {
					t.Fatalf("invalid spec accepted; problems: %v", ps)
				}
				if len(msgs) == 0 {
					t.Fatal("invalid testdata needs '# expect:' lines")
				}
				for _, m := range msgs {
					if !hasProblem(ps.Errors(), m) {
						t.Errorf("missing error %q; got:\n%v", m, ps.Err())
					}
				}
			default:
				t.Fatalf("testdata files are named valid-* or invalid-*")
			}
		})
	}
}

func TestProblemsCarryLines(t *testing.T) {
	_, ps, err := Load("testdata/invalid-nodes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range ps.Errors() {
		if p.Path == "spec.nodes[1].name" {
			found = true
			if p.Line != 17 {
				t.Errorf("spec.nodes[1].name reported at line %d, want 17", p.Line)
			}
		}
	}
	if !found {
		t.Error("no problem reported for spec.nodes[1].name")
	}
}

func TestDefaults(t *testing.T) {
	c, ps, err := Load("testdata/valid-minimal.yaml")
	if err != nil || ps.Err() != nil {
		t.Fatal(err, ps.Err())
	}
	s := c.Spec
	checks := []struct {
		name      string
		got, want any
	}{
		{"memcached.port", s.Memcached.Port, 11211},
		{"database.flavor", s.Database.Flavor, "mariadb"},
		{"database.clusterName", s.Database.ClusterName, "mini"},
		{"database.endpoint.port", s.Database.Endpoint.Port, 3306},
		{"rabbitmq.queueType", s.RabbitMQ.QueueType, "quorum"},
		{"rabbitmq.partitionHandling", s.RabbitMQ.PartitionHandling, "pause_minority"},
		{"rabbitmq.netTickTime", s.RabbitMQ.NetTickTime.String(), "5s"},
		{"rabbitmq.clientHeartbeat", s.RabbitMQ.ClientHeartbeat.String(), "4s"},
		{"database.suspectTimeout", s.Database.SuspectTimeout.String(), "1.5s"},
		{"database.endpoint.advertInterval", s.Database.Endpoint.AdvertInterval.String(), "500ms"},
		{"memcached.clientTimeout", s.Memcached.ClientTimeout.String(), "300ms"},
		{"requirements.controller.cores", s.Requirements.Controller.Cores, 4},
		{"requirements.compute.cores", s.Requirements.Compute.Cores, 8},
		{"requirements.maxLatency", s.Requirements.MaxLatency.String(), "2ms"},
		{"nodes[0].interfaces[0]", s.Nodes[0].Interfaces[0], Interface{Name: "eth0", Network: "management", Address: "192.0.2.1"}},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if id := s.Database.Endpoint.VirtualRouterID; id < 1 || id > 255 {
		t.Errorf("virtualRouterID %d out of range", id)
	}
}

func TestDrillTargetsDefaultAndKept(t *testing.T) {
	c, ps, err := Load("testdata/valid-minimal.yaml")
	if err != nil || ps.Err() != nil {
		t.Fatal(err, ps.Err())
	}
	d := c.Spec.Drill.Targets
	for _, x := range []struct {
		name string
		got  *Duration
		want string
	}{
		{"db.window", d.DB.Window, "3s"}, {"mq.window", d.MQ.Window, "10s"}, {"rpc.window", d.RPC.Window, "10s"},
		{"rpc.killMQWindow", d.RPC.KillMQWindow, "1s"}, {"cache.worstCall", d.Cache.WorstCall, "500ms"},
		{"cache.servedAgainWithin", d.Cache.ServedAgainWithin, "30s"}, {"healthyAfter", d.HealthyAfter, "1m30s"},
	} {
		if x.got == nil || x.got.String() != x.want {
			t.Errorf("drill.targets.%s = %v, want %s", x.name, x.got, x.want)
		}
	}
	if d.Cache.MissedExtraPoints == nil || *d.Cache.MissedExtraPoints != 5 {
		t.Errorf("drill.targets.cache.missedExtraPoints = %v, want 5", d.Cache.MissedExtraPoints)
	}

	// Values written are kept, a written 0 window too (no outage at all).
	data, err := os.ReadFile("testdata/valid-minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, []byte("  drill:\n    targets:\n      db: {window: 0s}\n      cache: {missedExtraPoints: 0, worstCall: 2s}\n      healthyAfter: 2m\n")...)
	c, ps = Parse(data)
	if ps.Err() != nil || c == nil {
		t.Fatalf("rejected: %v", ps.Err())
	}
	d = c.Spec.Drill.Targets
	if d.DB.Window.Duration != 0 || *d.Cache.MissedExtraPoints != 0 || d.Cache.WorstCall.String() != "2s" || d.HealthyAfter.String() != "2m0s" || d.MQ.Window.String() != "10s" {
		t.Errorf("written targets not kept: db %v, missed %v, worst %v, healthy %v, mq %v", d.DB.Window, *d.Cache.MissedExtraPoints, d.Cache.WorstCall, d.HealthyAfter, d.MQ.Window)
	}
}

func TestPartitionHandlingFollowsSize(t *testing.T) {
	for n, want := range map[int]string{1: "ignore", 2: "autoheal", 3: "pause_minority", 5: "pause_minority"} {
		if got := DefaultPartitionHandling(n); got != want {
			t.Errorf("%d nodes: %s, want %s", n, got, want)
		}
	}
}

func TestExampleValidates(t *testing.T) {
	for _, o := range []ExampleOptions{
		{Name: "lab", Controllers: 3, Computes: 1, Lab: true},
		{Name: "prod", Controllers: 3, Computes: 2},
		{Name: "big", Controllers: 5, Computes: 495},
		{Name: "one", Controllers: 1},
	} {
		data, err := ExampleYAML(o)
		if err != nil {
			t.Fatal(err)
		}
		c, ps := Parse(data)
		if ps.Err() != nil {
			t.Fatalf("%+v: example does not validate: %v\n%s", o, ps.Err(), data)
		}
		if got := len(c.Controllers()); got != o.Controllers {
			t.Errorf("%+v: %d controllers", o, got)
		}
		if got := len(c.Computes()); got != o.Computes {
			t.Errorf("%+v: %d computes", o, got)
		}
		if o.Controllers == 3 && len(ps.Warnings()) != 0 {
			t.Errorf("%+v: the 3-controller example should have no warnings: %v", o, ps.Warnings())
		}
	}
	if _, err := ExampleYAML(ExampleOptions{Controllers: 0}); err == nil {
		t.Error("0 controllers accepted")
	}
}

func TestEveryErrorAtOnce(t *testing.T) {
	_, ps, _ := Load("testdata/invalid-nodes.yaml")
	if n := len(ps.Errors()); n < 8 {
		t.Errorf("only %d errors reported; every problem must be reported at once:\n%v", n, ps.Err())
	}
}

func TestNodeSSHInherits(t *testing.T) {
	c, ps, err := Load("testdata/valid-ssh.yaml")
	if err != nil || ps.Err() != nil {
		t.Fatal(err, ps.Err())
	}
	want := []struct {
		host, user, key, known string
		port                   int
		agent, acceptNew, sudo bool
	}{
		{"10.1.0.11", "debian", "~/.ssh/hastack_ed25519", "known_hosts", 22, false, false, true},
		{"ctl2.admin.example", "debian", "~/.ssh/hastack_ed25519", "known_hosts", 2222, false, false, true},
		{"10.1.0.13", "root", "~/.ssh/hastack_ed25519", "known_hosts", 22, true, true, false},
	}
	for i, w := range want {
		s, ok := c.NodeSSH(c.Spec.Nodes[i])
		if !ok {
			t.Fatalf("node %d: no ssh settings", i)
		}
		if s.Host != w.host || s.User != w.user || s.IdentityFile != w.key || s.KnownHosts != w.known || s.Port != w.port ||
			s.UseAgent() != w.agent || s.AcceptsNewHostKeys() != w.acceptNew || s.Sudo() != w.sudo {
			t.Errorf("node %d: %+v agent=%v acceptNew=%v, want %+v", i, s, s.UseAgent(), s.AcceptsNewHostKeys(), w)
		}
	}
	// No block anywhere: a lab node.
	c2, _, _ := Load("testdata/valid-minimal.yaml")
	if _, ok := c2.NodeSSH(c2.Spec.Nodes[0]); ok {
		t.Error("a node without any ssh block has ssh settings")
	}
	// Defaults when only a key is given.
	c2.Spec.Nodes[0].SSH = &SSH{IdentityFile: "k"}
	s, _ := c2.NodeSSH(c2.Spec.Nodes[0])
	if s.User != "root" || s.Port != 22 || s.KnownHosts != "~/.ssh/known_hosts" || s.Host != "192.0.2.1" || s.Sudo() {
		t.Errorf("defaults: %+v", s)
	}
}

// The example's commented ssh block is what an operator uncomments for real
// hosts: it must validate as it stands.
func TestExampleSSHBlockValidates(t *testing.T) {
	data, err := ExampleYAML(ExampleOptions{Name: "prod", Controllers: 3})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if l, ok := strings.CutPrefix(line, "  # ssh:"); ok {
			line = "  ssh:" + l
		} else if l, ok := strings.CutPrefix(line, "  #   "); ok {
			line = "    " + l
		}
		out = append(out, line)
	}
	c, ps := Parse([]byte(strings.Join(out, "\n")))
	if ps.Err() != nil {
		t.Fatalf("uncommented ssh block: %v", ps.Err())
	}
	s, ok := c.NodeSSH(c.Spec.Nodes[0])
	if !ok || s.IdentityFile != "~/.ssh/id_ed25519" || s.User != "root" {
		t.Errorf("uncommented ssh block not in force: %+v", s)
	}
}

func TestSetClusterSSH(t *testing.T) {
	data, err := ExampleYAML(ExampleOptions{Name: "lab", Controllers: 3, Computes: 1, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	s := SSH{User: "root", IdentityFile: "/var/lib/hastack/lab/ssh/id_ed25519", KnownHosts: "hastack.known_hosts"}
	out, err := SetClusterSSH(data, s)
	if err != nil {
		t.Fatal(err)
	}
	// Inserted as text: every line of the original is still there, in order.
	if !strings.Contains(string(out), "spec:\n  # How hastack reaches every node: over SSH") || !strings.HasSuffix(string(out), string(data[strings.Index(string(data), "spec:\n")+6:])) {
		t.Errorf("not inserted under spec: as text:\n%s", out)
	}
	c, ps := Parse(out)
	if ps.Err() != nil {
		t.Fatalf("edited spec invalid: %v\n%s", ps.Err(), out)
	}
	for _, n := range c.Spec.Nodes {
		got, ok := c.NodeSSH(n)
		if !ok || got.IdentityFile != s.IdentityFile || got.KnownHosts != s.KnownHosts || got.User != "root" || got.Host != n.Address {
			t.Errorf("%s: %+v", n.Name, got)
		}
	}
	// Setting it again replaces the block; the spec stays valid.
	s.IdentityFile = "/other/key"
	again, err := SetClusterSSH(out, s)
	if err != nil {
		t.Fatal(err)
	}
	c, ps = Parse(again)
	if ps.Err() != nil {
		t.Fatalf("re-edited spec invalid: %v\n%s", ps.Err(), again)
	}
	if got, _ := c.NodeSSH(c.Spec.Nodes[0]); got.IdentityFile != "/other/key" || strings.Count(string(again), "ssh:") != 1+strings.Count(string(data), "ssh:") {
		t.Errorf("replace: %+v\n%s", got, again)
	}
}
