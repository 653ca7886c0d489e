// Package neighbour sets the kernel's neighbour (ARP) timers of every node's
// management NIC, so that a peer that vanishes without a TCP reset (power
// loss, a cut cable, a dead switch port) is soon known to be gone: a TCP
// connect to it then fails at once ("no route to host") instead of waiting
// out its timeout.
//
// Why it matters: oslo.messaging 14 (Debian 12) never moves an RPC server or
// reply consumer off a broker that vanished while a connect to that broker
// waits out kombu's 5 s connect timeout (the listener's poll timeout, at
// most 5 s, ends the reconnect before kombu switches brokers; oslo has no
// option for the connect timeout). Linux keeps a silent neighbour
// "reachable" for 15-45 s by default, then probes it for 5 s more, so those
// consumers stayed on a vanished broker for about 50 s (measured on the lab
// in session 10); with these timers, RPC came back within 9 s of a cut.
package neighbour

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// Path is the node's sysctl file: systemd-sysctl applies it at boot and
// whenever the NIC appears; 'up' applies it at once.
const Path = "/etc/sysctl.d/60-hastack-neighbour.conf"

// Timers are the neighbour settings, by name under
// /proc/sys/net/ipv4/neigh/<NIC>/, in the order they are written.
var Timers = []struct {
	Name  string
	Value int
	Why   string
}{
	{"base_reachable_time_ms", 2000, "a neighbour stays reachable 1-3 s after its last confirmation (default 30 s: 15-45 s); TCP traffic that moves confirms live peers, others cost one unicast probe every few seconds"},
	{"delay_first_probe_time", 1, "then 1 s (default 5) before it is probed"},
	{"retrans_time_ms", 200, "probes 200 ms apart (default 1 s; a whole number of clock ticks at any HZ): 3 unanswered probes fail it in 0.6 s"},
}

// Renderer renders the sysctl file for every node: OpenStack's services run
// on controllers and computes alike, and each holds broker connections.
type Renderer struct{}

// Name implements engine.Renderer.
func (Renderer) Name() string { return "neighbour" }

// Files implements engine.Renderer.
func (Renderer) Files(c *spec.Cluster, n spec.Node, _ secrets.Source) ([]engine.File, error) {
	mgmt, ok := n.ManagementInterface()
	if !ok {
		return nil, fmt.Errorf("node %s has no management interface", n.Name)
	}
	var b strings.Builder
	b.WriteString(engine.Header("#", c, n))
	fmt.Fprintf(&b, `
# Neighbour (ARP) timers of the management NIC %s: a peer that vanishes
# without a TCP reset (power loss, cut cable) is known to be gone within
# about 4 s instead of 20-50 s, so connects to it fail at once and clients
# move to another controller. OpenStack's RPC consumers (oslo.messaging)
# otherwise stay on a vanished broker until this happens.
`, mgmt.Name)
	for _, t := range Timers {
		fmt.Fprintf(&b, "# %s\n%s = %d\n", t.Why, key(mgmt.Name, t.Name), t.Value)
	}
	return []engine.File{engine.Config(Path, b.String())}, nil
}

// key is the sysctl key of a neighbour setting of NIC nic, with slashes so
// that a NIC name holding a dot (a VLAN, bond0.100) stays one component.
func key(nic, name string) string { return "net/ipv4/neigh/" + nic + "/" + name }

// Phase writes the file on every node and applies it when the running
// values differ.
func Phase() plan.Phase {
	return plan.Phase{Name: "neighbour", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		return plan.NodeSteps(ctx, t.Cluster.Spec.Nodes, func(ctx context.Context, n spec.Node) (*plan.Step, error) {
			return nodeStep(ctx, t, n)
		})
	}}
}

func nodeStep(ctx context.Context, t *plan.Target, n spec.Node) (*plan.Step, error) {
	nd := t.Node(n.Name)
	files, err := Renderer{}.Files(t.Cluster, n, t.Secrets)
	if err != nil {
		return nil, err
	}
	stale, err := plan.StaleFiles(ctx, nd, files)
	if err != nil {
		return nil, err
	}
	mgmt, _ := n.ManagementInterface()
	// A setting that cannot be read is set all the same; one that cannot be
	// set is reported, not fatal: the engines work without it, their
	// clients only take longer to leave a vanished peer.
	differ, rerr := Differ(ctx, nd, mgmt.Name)
	if rerr != nil {
		differ = []string{"unknown: " + rerr.Error()}
	}
	if len(stale) == 0 && len(differ) == 0 {
		return nil, nil
	}
	var todo []string
	if len(stale) > 0 {
		todo = append(todo, "write "+plan.Paths(stale))
	}
	if len(differ) > 0 {
		todo = append(todo, fmt.Sprintf("set the neighbour timers of %s (now %s) so a vanished peer is known to be gone in seconds", mgmt.Name, strings.Join(differ, ", ")))
	}
	return &plan.Step{Host: n.Name, Action: strings.Join(todo, "; "), Do: func(ctx context.Context) error {
		if err := plan.WriteFiles(ctx, nd, stale); err != nil {
			return err
		}
		for _, tm := range Timers {
			p := "/proc/sys/" + key(mgmt.Name, tm.Name)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := nd.Run(cctx, node.Cmd{Argv: []string{"sh", "-c", `echo "$1" > "$2"`, "sh", strconv.Itoa(tm.Value), p}})
			cancel()
			if err != nil {
				t.Say("neighbour", n.Name, "could not set %s now (%v): %s applies it at the next boot; until then clients take up to about 50 s to leave a controller that vanishes", p, err, Path)
				return nil
			}
		}
		return nil
	}}, nil
}

// Differ lists the neighbour settings of NIC nic on a node whose running
// value is not hastack's, as "name=have".
func Differ(ctx context.Context, nd node.Node, nic string) ([]string, error) {
	argv := []string{"cat"}
	for _, t := range Timers {
		argv = append(argv, "/proc/sys/"+key(nic, t.Name))
	}
	res, err := nd.Run(ctx, node.Cmd{Argv: argv})
	if err != nil {
		return nil, fmt.Errorf("reading the neighbour timers of %s: %w (is %s the node's management NIC?)", nic, err, nic)
	}
	have := strings.Fields(string(res.Stdout))
	if len(have) != len(Timers) {
		return nil, fmt.Errorf("reading the neighbour timers of %s: %d values for %d settings", nic, len(have), len(Timers))
	}
	var out []string
	for i, t := range Timers {
		if have[i] != strconv.Itoa(t.Value) {
			out = append(out, t.Name+"="+have[i])
		}
	}
	return out, nil
}
