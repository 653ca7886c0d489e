package deploy

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
)

// enginePorts are the TCP ports each engine service listens on, on a
// controller: what must be free before hastack starts that engine there.
func enginePorts(c *spec.Cluster) map[string][]int {
	d, r, e := c.Spec.Database, c.Spec.RabbitMQ, c.Spec.Database.Endpoint
	return map[string][]int{
		"mariadb":       {d.Port, spec.GaleraReplicationPort, spec.GaleraISTPort, spec.GaleraSSTPort},
		"rabbitmq":      {r.Port, r.ManagementPort, r.DistPort},
		"memcached":     {c.Spec.Memcached.Port},
		"galera-health": {e.CheckPort},
		"haproxy":       {e.StatsPort, e.PeersPort},
	}
}

// Listener is one listening TCP socket as ss(8) reports it.
type Listener struct {
	Address string
	Port    int
	Process string // command name, "" when ss could not tell
}

// ParseListeners reads `ss -Htlnp` output.
func ParseListeners(out string) []Listener {
	var ls []Listener
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		host, port, err := net.SplitHostPort(f[3])
		if err != nil {
			continue
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			continue
		}
		l := Listener{Address: strings.Trim(host, "[]"), Port: p}
		if i := strings.Index(line, `(("`); i >= 0 {
			rest := line[i+3:]
			if j := strings.Index(rest, `"`); j >= 0 {
				l.Process = rest[:j]
			}
		}
		ls = append(ls, l)
	}
	return ls
}

// Ports refuses to start an engine on a controller where something else
// already holds one of its ports: the engine would fail to bind, or worse,
// clients would reach the other program. Ports of engines hastack already
// runs there are theirs and not looked at.
func Ports() plan.Phase {
	return plan.Phase{Name: "ports", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		byEngine := enginePorts(t.Cluster)
		return nil, plan.ForEach(ctx, plan.Names(t.Cluster.Controllers()), func(ctx context.Context, name string) error {
			nd := t.Node(name)
			var want []int
			owner := map[int]string{}
			for svc, ports := range byEngine {
				running, err := plan.Running(ctx, nd, svc)
				if err != nil {
					return err
				}
				if running {
					continue
				}
				for _, p := range ports {
					want = append(want, p)
					owner[p] = svc
				}
			}
			if len(want) == 0 {
				return nil
			}
			out, err := plan.Sh(ctx, nd, "ss", "-Htlnp")
			if err != nil {
				return err
			}
			var taken []string
			addr := nd.Address()
			for _, l := range ParseListeners(out) {
				svc, ok := owner[l.Port]
				// Only a socket on the engine's own address, or on every
				// address, is in the way (HAProxy holds the database port
				// on the VIP, and that is fine).
				if !ok || (l.Address != addr && l.Address != "0.0.0.0" && l.Address != "*" && l.Address != "::") {
					continue
				}
				if l.Process == "systemd" && svc == "mariadb" {
					// Debian's mariadb.socket: hastack stops and disables
					// it when it starts mariadb (systemd hosts only).
					continue
				}
				who := l.Process
				if who == "" {
					who = "an unknown process"
				}
				taken = append(taken, fmt.Sprintf("port %d (for %s) is held by %s on %s", l.Port, svc, who, l.Address))
			}
			if len(taken) > 0 {
				sort.Strings(taken)
				return fmt.Errorf("%s; stop that program or change the port in the spec, then run 'hastack up' again (nothing was started)", strings.Join(taken, "; "))
			}
			return nil
		})
	}}
}
