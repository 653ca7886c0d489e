package lab

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/spec"
)

func TestMain(m *testing.M) {
	// The test binary is the lab nodes' init in these tests.
	MaybeRunInit()
	os.Exit(m.Run())
}

// testSpec is the default lab moved to address ranges no operator's lab
// uses, so the tests run beside one.
func testSpec(t *testing.T, controllers, computes int, mgmt, provider string) *spec.Cluster {
	t.Helper()
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "labtest", Controllers: controllers, Computes: computes, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	y := strings.ReplaceAll(string(data), "10.77.", mgmt+".")
	y = strings.ReplaceAll(y, "10.78.", provider+".")
	c, ps := spec.Parse([]byte(y))
	if err := ps.Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration: makes network namespaces, bridges and mounts; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root (run 'bash scripts/test' as root, or use -short)")
	}
}

// testOptions are the options of a test's lab. As root, what an interrupted
// earlier run left under the prefix is removed first.
func testOptions(t *testing.T, prefix string) Options {
	t.Helper()
	if os.Geteuid() == 0 {
		if err := Down(context.Background(), Options{StateDir: t.TempDir(), Prefix: prefix, Log: t.Logf}); err != nil {
			t.Fatalf("removing what an earlier run left under lab prefix %s: %v", prefix, err)
		}
	}
	return Options{StateDir: t.TempDir(), Prefix: prefix, Log: t.Logf}
}

func run1(t *testing.T, n *Node, argv ...string) string {
	t.Helper()
	res, err := n.Run(context.Background(), node.Cmd{Argv: argv})
	if err != nil {
		t.Fatalf("%s: %v", n.Name(), err)
	}
	return strings.TrimSpace(string(res.Stdout))
}

// rawSend sends one broadcast Ethernet frame (a local experimental
// ethertype, 0x88b5) carrying rawProbe through a packet socket on the NIC
// named by its first argument.
const rawSend = `import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
s.send(b"\xff" * 6 + s.getsockname()[4] + b"\x88\xb5" + b"hastack-cut-probe".ljust(46, b"."))
`

// rawFrameSeen reports whether a frame that node n sends with rawSend on its
// eth0 is seen on the host's bridge within 2 seconds.
func rawFrameSeen(t *testing.T, ctx context.Context, n *Node, bridge string) bool {
	t.Helper()
	const ethPExp = 0x88b5
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(ethPExp)))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	ifi, err := net.InterfaceByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(ethPExp), Ifindex: ifi.Index}); err != nil {
		t.Fatal(err)
	}
	tv := syscall.NsecToTimeval(int64(200 * time.Millisecond))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Run(ctx, node.Cmd{Argv: []string{"python3", "-c", rawSend, "eth0"}}); err != nil {
		t.Fatalf("sending a raw frame from %s: %v", n.Name(), err)
	}
	buf := make([]byte, 2048)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		k, _, err := syscall.Recvfrom(fd, buf, 0)
		if err == nil && strings.Contains(string(buf[:k]), "hastack-cut-probe") {
			return true
		}
	}
	return false
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func hostPing(addr string) bool {
	return exec.Command("ping", "-c", "1", "-W", "1", addr).Run() == nil
}

func TestIntegrationLab(t *testing.T) {
	integration(t)
	ctx := context.Background()
	c := testSpec(t, 3, 1, "10.211", "10.212")
	o := testOptions(t, "ht")
	l, err := Up(ctx, c, "", o)
	t.Cleanup(func() {
		if err := Down(context.Background(), o); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("list", func(t *testing.T) {
		entries := l.List()
		want := []string{"ctl1", "ctl2", "ctl3", "cmp1", "ntp-upstream1"}
		if len(entries) != len(want) {
			t.Fatalf("list: %d entries, want %d: %+v", len(entries), len(want), entries)
		}
		for i, e := range entries {
			if e.Name != want[i] || !e.Running {
				t.Errorf("entry %d: %+v, want %s running", i, e, want[i])
			}
		}
		if entries[0].Role != spec.RoleController || entries[0].Address != "10.211.0.11" || entries[0].Addresses["provider"] != "10.212.0.11" {
			t.Errorf("ctl1 entry: %+v", entries[0])
		}
		if _, err := Up(ctx, c, "", o); err != nil {
			t.Errorf("second up of the same lab: %v, want it to find the lab up", err)
		}
	})

	t.Run("identity and names", func(t *testing.T) {
		for _, name := range []string{"ctl1", "ctl2", "ctl3", "cmp1"} {
			n, err := l.Node(name)
			if err != nil {
				t.Fatal(err)
			}
			if got := run1(t, n, "hostname"); got != name {
				t.Errorf("hostname on %s = %q", name, got)
			}
			for other, addr := range map[string]string{"ctl1": "10.211.0.11", "ctl3": "10.211.0.13", "cmp1": "10.211.1.1"} {
				got := run1(t, n, "getent", "hosts", other)
				if f := strings.Fields(got); len(f) == 0 || f[0] != addr {
					t.Errorf("on %s, %s resolves to %q, want %s", name, other, got, addr)
				}
			}
			// The node has its own PID namespace: PID 1 is its init.
			if got := run1(t, n, "cat", "/proc/1/cmdline"); !strings.HasPrefix(got, "hastack-lab-node:ht:"+name) {
				t.Errorf("on %s, PID 1 is %q, want the node's init", name, got)
			}
		}
	})

	t.Run("network", func(t *testing.T) {
		for _, a := range []string{"10.211.0.11", "10.211.0.12", "10.211.0.13", "10.211.1.1", "10.211.0.2"} {
			if !hostPing(a) {
				t.Errorf("host cannot reach %s", a)
			}
		}
		n1, _ := l.Node("ctl1")
		if _, err := n1.Run(ctx, node.Cmd{Argv: []string{"ping", "-c", "1", "-W", "1", "10.212.0.13"}}); err != nil {
			t.Errorf("ctl1 cannot reach ctl3 on the provider network: %v", err)
		}
		// No default route: nothing leaves the machine from a node.
		if out := run1(t, n1, "ip", "route", "show", "default"); out != "" {
			t.Errorf("ctl1 has a default route: %q", out)
		}
	})

	t.Run("private folders", func(t *testing.T) {
		n1, _ := l.Node("ctl1")
		n2, _ := l.Node("ctl2")
		marker := "/etc/mysql/hastack-lab-test-marker"
		if err := n1.WriteFile(ctx, marker, []byte("ctl1\n"), 0o640, "mysql"); err != nil {
			t.Fatal(err)
		}
		if got, err := n1.ReadFile(ctx, marker); err != nil || string(got) != "ctl1\n" {
			t.Errorf("read back on ctl1: %q, %v", got, err)
		}
		if got := run1(t, n1, "stat", "-c", "%U %a", marker); got != "mysql 640" {
			t.Errorf("owner and mode inside ctl1: %q", got)
		}
		if _, err := n2.ReadFile(ctx, marker); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ctl2 sees ctl1's file: %v", err)
		}
		if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the host sees ctl1's file: %v", err)
		}
		// The packages' configuration is there, as on a host.
		if _, err := n2.ReadFile(ctx, "/etc/mysql/my.cnf"); err != nil {
			t.Errorf("ctl2 has no /etc/mysql/my.cnf: %v", err)
		}
		// A file the lab bind-mounts can still be rewritten, on the node
		// only: the host's copy stays as it was.
		hostBefore, _ := os.ReadFile("/etc/memcached.conf")
		if err := n2.WriteFile(ctx, "/etc/memcached.conf", []byte("-p 11211\n"), 0o644, ""); err != nil {
			t.Errorf("rewriting /etc/memcached.conf: %v", err)
		}
		if hostAfter, _ := os.ReadFile("/etc/memcached.conf"); string(hostAfter) != string(hostBefore) {
			t.Errorf("writing /etc/memcached.conf on a node changed the host's file")
		}
		if got := run1(t, n2, "cat", "/etc/memcached.conf"); got != "-p 11211" {
			t.Errorf("/etc/memcached.conf inside ctl2: %q", got)
		}
	})

	t.Run("upstream time stand-in", func(t *testing.T) {
		stratum, err := ntpStratum("10.211.0.2:123")
		if err != nil {
			t.Fatal(err)
		}
		if stratum != 1 {
			t.Errorf("stand-in answers with stratum %d, want 1", stratum)
		}
	})

	t.Run("services and faults", func(t *testing.T) {
		n3, _ := l.Node("ctl3")
		sv := n3.Services()
		if err := sv.Start(ctx, node.Service{Name: "sleeper", Argv: []string{"/bin/sleep", "1000"}}); err != nil {
			t.Fatal(err)
		}
		st, err := sv.Status(ctx, "sleeper")
		if err != nil || !st.Running {
			t.Fatalf("status: %+v, %v", st, err)
		}
		if got := run1(t, n3, "pgrep", "-x", "sleep"); got != itoa(st.PID) {
			t.Errorf("pgrep inside the node = %q, supervisor says pid %d", got, st.PID)
		}

		msg, err := l.Freeze(ctx, "ctl3")
		if err != nil {
			t.Fatal(err)
		}
		t.Log(msg)
		pids, _ := nodePIDs(n3.PID())
		for _, p := range pids {
			if p != n3.PID() && procState(p) != "T" {
				t.Errorf("after freeze, %s[%d] is in state %s", procComm(p), p, procState(p))
			}
		}
		if _, err := l.Thaw(ctx, "ctl3"); err != nil {
			t.Fatal(err)
		}
		pids, _ = nodePIDs(n3.PID())
		for _, p := range pids {
			if procState(p) == "T" {
				t.Errorf("after thaw, %s[%d] is still stopped", procComm(p), p)
			}
		}

		// A command on a frozen node ends at its deadline, and takes the
		// processes it started inside the node with it.
		if _, err := l.Freeze(ctx, "ctl3"); err != nil {
			t.Fatal(err)
		}
		dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		_, err = n3.Run(dctx, node.Cmd{Argv: []string{"sh", "-c", "sleep 3600 & wait"}})
		cancel()
		if err == nil {
			t.Error("a command past its deadline succeeded")
		} else if !strings.Contains(err.Error(), "ctl3 is frozen") || !strings.Contains(err.Error(), "lab fault thaw ctl3") {
			t.Errorf("a command that timed out on a frozen node does not say the node is frozen: %v", err)
		}
		if _, err := l.Thaw(ctx, "ctl3"); err != nil {
			t.Fatal(err)
		}
		if out, err := n3.Run(ctx, node.Cmd{Argv: []string{"pgrep", "-f", "sleep 3600"}}); err == nil {
			t.Errorf("the command's processes outlived its deadline: %s", out.Stdout)
		}

		// A frame ctl3 sends through a packet socket (as keepalived sends
		// its gratuitous ARPs) reaches the bridge, until the cut.
		br := l.bridgeOf(spec.ManagementNetwork)
		if !rawFrameSeen(t, ctx, n3, br) {
			t.Fatalf("a raw frame from ctl3 did not reach bridge %s before any cut: the probe does not work", br)
		}
		if msg, err = l.Partition(ctx, "ctl3"); err != nil {
			t.Fatal(err)
		}
		t.Log(msg)
		if hostPing("10.211.0.13") {
			t.Error("ctl3 answers the host while partitioned")
		}
		if rawFrameSeen(t, ctx, n3, br) {
			t.Error("a raw frame from ctl3 (a packet socket, as keepalived's gratuitous ARP) reached the bridge while ctl3 was cut off")
		}
		if msg, err := l.Partition(ctx, "ctl3"); err != nil || !strings.Contains(msg, "already cut off") {
			t.Errorf("cutting a cut node again: %q, %v; want it to say it already is", msg, err)
		}
		// The node's own sends do not fail, as over a cut cable.
		if _, err := n3.Run(ctx, node.Cmd{Argv: []string{"python3", "-c", rawSend, "eth0"}}); err != nil {
			t.Errorf("ctl3's sends fail while it is cut off (a cut cable loses them silently): %v", err)
		}
		n1, _ := l.Node("ctl1")
		if _, err := n1.Run(ctx, node.Cmd{Argv: []string{"ping", "-c", "1", "-W", "1", "10.211.0.13"}}); err == nil {
			t.Error("ctl1 reaches ctl3 while ctl3 is partitioned")
		}
		if _, err := n1.Run(ctx, node.Cmd{Argv: []string{"ping", "-c", "1", "-W", "1", "10.212.0.13"}}); err != nil {
			t.Errorf("the provider network should stay up during a management partition: %v", err)
		}
		if msg, err = l.Heal(ctx, "ctl3"); err != nil {
			t.Fatal(err)
		}
		t.Log(msg)
		if !hostPing("10.211.0.13") {
			t.Error("ctl3 unreachable after heal")
		}

		if msg, err = l.Kill(ctx, "ctl3", "sleeper"); err != nil {
			t.Fatal(err)
		}
		t.Log(msg)
		st, err = waitStopped(ctx, sv, "sleeper")
		if err != nil || st.Running || st.Signal == "" {
			t.Errorf("after kill: %+v, %v", st, err)
		}
		if _, err := l.Kill(ctx, "ctl3", "no-such-process"); err == nil {
			t.Error("killing a process that does not exist succeeded")
		}
	})

	t.Run("snapshot and rollback", func(t *testing.T) {
		n1, _ := l.Node("ctl1")
		sv := n1.Services()
		if err := n1.WriteFile(ctx, "/var/lib/mysql/state", []byte("one"), 0o644, "mysql"); err != nil {
			t.Fatal(err)
		}
		if err := sv.Start(ctx, node.Service{Name: "writer", Argv: []string{"/bin/sleep", "1000"}}); err != nil {
			t.Fatal(err)
		}
		before, _ := sv.Status(ctx, "writer")
		info, err := l.Snapshot(ctx, "s1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Services) == 0 {
			t.Errorf("snapshot recorded no running service: %+v", info)
		}
		after, _ := sv.Status(ctx, "writer")
		if !after.Running || after.PID == before.PID {
			t.Errorf("snapshot did not stop and restart the service: before %+v after %+v", before, after)
		}
		if err := n1.WriteFile(ctx, "/var/lib/mysql/state", []byte("two"), 0o644, "mysql"); err != nil {
			t.Fatal(err)
		}
		if err := n1.WriteFile(ctx, "/var/lib/mysql/new", []byte("x"), 0o644, ""); err != nil {
			t.Fatal(err)
		}
		if err := sv.Stop(ctx, "writer", 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := l.Rollback(ctx, "s1", nil); err != nil {
			t.Fatal(err)
		}
		if got, _ := n1.ReadFile(ctx, "/var/lib/mysql/state"); string(got) != "one" {
			t.Errorf("after rollback, state = %q, want one", got)
		}
		if _, err := n1.ReadFile(ctx, "/var/lib/mysql/new"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after rollback, a file made after the snapshot remains: %v", err)
		}
		if st, _ := sv.Status(ctx, "writer"); !st.Running {
			t.Errorf("after rollback, the service that ran at snapshot time is not running: %+v", st)
		}
		// The hosts file, bind-mounted, still resolves after rollback.
		if got := run1(t, n1, "getent", "hosts", "ctl2"); !strings.HasPrefix(got, "10.211.0.12") {
			t.Errorf("after rollback: getent hosts ctl2 = %q", got)
		}
		snaps, err := l.Snapshots()
		if err != nil || len(snaps) != 1 || snaps[0].Name != "s1" {
			t.Errorf("snapshots: %+v, %v", snaps, err)
		}
		err = l.Rollback(ctx, "nope", nil)
		if err == nil || !strings.Contains(err.Error(), `no snapshot "nope"`) || !strings.Contains(err.Error(), "s1") {
			t.Errorf("rollback to a missing snapshot: %v", err)
		}
		if _, err := l.Snapshot(ctx, "../x", nil); err == nil {
			t.Error("a snapshot name with a slash was accepted")
		}
	})

	t.Run("down", func(t *testing.T) {
		st := l.State()
		if err := Down(ctx, o); err != nil {
			t.Fatal(err)
		}
		assertNothingLeft(t, o, st)
		if err := Down(ctx, o); err != nil {
			t.Errorf("second down: %v", err)
		}
	})
}

func assertNothingLeft(t *testing.T, o Options, st State) {
	t.Helper()
	for _, n := range st.Nodes {
		if _, err := os.Stat(filepath.Join("/run/netns", n.NetNS)); err == nil {
			t.Errorf("netns %s left behind", n.NetNS)
		}
		if alive(n.PID, n.Start) {
			t.Errorf("node %s init %d still runs", n.Name, n.PID)
		}
	}
	if pids := markedInits(o.Prefix); len(pids) > 0 {
		t.Errorf("marked node inits left: %v", pids)
	}
	links, _ := hostLinks(context.Background())
	for name, ln := range links {
		if strings.HasPrefix(name, o.Prefix) || ln.Alias == linkAlias(o.Prefix) {
			t.Errorf("link %s left behind", name)
		}
	}
	ents, _ := os.ReadDir(o.StateDir)
	if len(ents) > 0 {
		t.Errorf("state folder %s not emptied: %d entries", o.StateDir, len(ents))
	}
}

func TestIntegrationLabRefusesWhatIsNotItsOwn(t *testing.T) {
	integration(t)
	ctx := context.Background()

	t.Run("route clash", func(t *testing.T) {
		o := testOptions(t, "hr")
		if out, err := exec.Command("ip", "link", "add", "xhrclash", "type", "bridge").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		defer exec.Command("ip", "link", "del", "xhrclash").Run()
		if out, err := exec.Command("sh", "-c", "ip addr add 10.215.1.1/24 dev xhrclash && ip link set xhrclash up").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		c := testSpec(t, 1, 0, "10.215", "10.216")
		_, err := Up(ctx, c, "", o)
		if err == nil {
			Down(ctx, o)
			t.Fatal("lab up over a network the host routes elsewhere succeeded")
		}
		if !strings.Contains(err.Error(), "overlaps the host's route 10.215.1.0/24") || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("error does not say what clashes: %v", err)
		}
		assertNothingLeft(t, o, State{})
	})

	t.Run("bridge name taken", func(t *testing.T) {
		o := testOptions(t, "hb")
		if out, err := exec.Command("ip", "link", "add", "hbbr0", "type", "bridge").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		defer exec.Command("ip", "link", "del", "hbbr0").Run()
		c := testSpec(t, 1, 0, "10.217", "10.218")
		_, err := Up(ctx, c, "", o)
		if err == nil {
			Down(ctx, o)
			t.Fatal("lab up over an existing bridge succeeded")
		}
		if !strings.Contains(err.Error(), "hbbr0 exists and is not this lab's") {
			t.Errorf("error does not name the bridge: %v", err)
		}
		if _, err := os.Stat(filepath.Join(o.StateDir, "lab.json")); err == nil {
			t.Error("a refused lab up left a state file")
		}
		// Down must not remove the bridge it did not make.
		if err := Down(ctx, o); err != nil {
			t.Fatal(err)
		}
		if links, _ := hostLinks(ctx); links["hbbr0"].Name == "" {
			t.Error("lab down removed a bridge that was not the lab's")
		}
	})

	// A lab whose run was killed and whose state folder is gone: its node
	// processes died with the run, its namespaces, veths and firewall rules
	// stayed. lab up names them and says how to remove them; lab down in
	// an empty folder removes them, and nothing that only shares the prefix.
	t.Run("state lost", func(t *testing.T) {
		o := testOptions(t, "hl")
		c := testSpec(t, 1, 0, "10.209", "10.210")
		l, err := Up(ctx, c, "", o)
		if err != nil {
			t.Fatal(err)
		}
		st := l.State()
		for _, pid := range markedInits(o.Prefix) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGone(pid, 10*time.Second)
		}
		if err := os.RemoveAll(o.StateDir); err != nil {
			t.Fatal(err)
		}
		// Not the lab's: a namespace of the lab's naming with a veth pair of its own.
		if out, err := exec.Command("sh", "-c", "ip netns add hl-foreign && ip -n hl-foreign link add a0 type veth peer name a1").CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		defer exec.Command("ip", "netns", "delete", "hl-foreign").Run()

		o2 := Options{StateDir: t.TempDir(), Prefix: "hl", Log: t.Logf}
		_, err = Up(ctx, c, "", o2)
		if err == nil {
			Down(ctx, o2)
			t.Fatal("lab up over a lost lab's namespaces succeeded")
		}
		if !strings.Contains(err.Error(), "whose state is gone") || !strings.Contains(err.Error(), "hastack lab down --prefix hl") {
			t.Errorf("lab up does not say how to remove the lost lab: %v", err)
		}
		if err := Down(ctx, o2); err != nil {
			t.Fatalf("lab down of a lost lab: %v", err)
		}
		assertNothingLeft(t, o2, st)
		if _, err := os.Stat("/run/netns/hl-foreign"); err != nil {
			t.Error("lab down removed a namespace that only shares the lab's naming")
		}
		if rules := markedForwardRules(ctx, "hl"); len(rules) > 0 {
			t.Errorf("firewall rules left: %v", rules)
		}
		l, err = Up(ctx, c, "", o2)
		if err != nil {
			t.Fatalf("lab up after the lost lab was removed: %v", err)
		}
		_ = l
		if err := Down(ctx, o2); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("upstream outside the lab", func(t *testing.T) {
		o := testOptions(t, "hu")
		c := testSpec(t, 1, 0, "10.219", "10.220")
		c.Spec.NTP.Upstream = []string{"192.0.2.123"}
		_, err := Up(ctx, c, "", o)
		if err == nil {
			Down(ctx, o)
			t.Fatal("an upstream time server outside the lab was accepted")
		}
		if !strings.Contains(err.Error(), "192.0.2.123") || !strings.Contains(err.Error(), "no internet") {
			t.Errorf("error: %v", err)
		}
	})
}

func waitStopped(ctx context.Context, sv node.Supervisor, name string) (node.ServiceState, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := sv.Status(ctx, name)
		if err != nil || !st.Running || time.Now().After(deadline) {
			return st, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ntpStratum sends one NTP client request and returns the server's stratum.
func ntpStratum(addr string) (int, error) {
	conn, err := net.DialTimeout("udp", addr, 2*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	req := make([]byte, 48)
	req[0] = 0x23 // leap 0, version 4, mode 3 (client)
	var lastErr error
	for try := 0; try < 5; try++ {
		conn.SetDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write(req); err != nil {
			return 0, err
		}
		resp := make([]byte, 48)
		n, err := conn.Read(resp)
		if err == nil && n >= 48 {
			return int(resp[1]), nil
		}
		lastErr = err
	}
	return 0, lastErr
}

func itoa(i int) string { return strconv.Itoa(i) }

// State hands out a deep copy: changing it changes nothing in the lab.
func TestStateIsACopy(t *testing.T) {
	l := &Lab{state: State{Cluster: "c", Networks: []NetState{{Name: "m"}}, Nodes: []NodeState{{Name: "n1", NICs: []NICState{{Name: "eth0"}}, Extra: &UpstreamNTP{Address: "a"}}}, ForwardRules: [][]string{{"x"}}}}
	s := l.State()
	s.Networks[0].Name = "changed"
	s.Nodes[0].NICs[0].Name = "changed"
	s.Nodes[0].Extra.Address = "changed"
	s.ForwardRules[0][0] = "changed"
	if got := l.State(); got.Networks[0].Name != "m" || got.Nodes[0].NICs[0].Name != "eth0" || got.Nodes[0].Extra.Address != "a" || got.ForwardRules[0][0] != "x" {
		t.Errorf("the lab's state changed through a copy: %+v", got)
	}
}
