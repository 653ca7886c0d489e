package chrony

import (
	"context"
	"fmt"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
)

// Service is chronyd in the foreground. With a shared clock (lab nodes on
// one machine) it must not steer the clock (-x): it still serves time and
// reports tracking, so the hierarchy and offsets can be checked for real.
func Service(sharedClock bool) node.Service {
	argv := []string{"/usr/sbin/chronyd", "-d", "-f", "/etc/chrony/chrony.conf"}
	if sharedClock {
		argv = append(argv, "-x")
	}
	return node.Service{Name: "chrony", Argv: argv}
}

// Phase writes chrony's configuration on every node and runs chronyd:
// controllers follow the upstream servers and each other, every other node
// follows the controllers.
func Phase() plan.Phase {
	return plan.Phase{Name: "chrony", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
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
	st, err := nd.Services().Status(ctx, "chrony")
	if err != nil {
		return nil, err
	}
	running := st.Running
	if running && len(stale) == 0 {
		// Written by an earlier 'up' that failed before the restart: the
		// running process has not read it.
		newer, err := plan.NotReadSince(ctx, nd, st, "/etc/chrony/chrony.conf")
		if err != nil {
			return nil, err
		}
		if newer {
			stale = files
		}
	}
	if len(stale) == 0 && running {
		return burstStep(ctx, nd, n, st.Started)
	}
	action := "start chronyd"
	if len(stale) > 0 {
		action = "write " + plan.Paths(stale) + " and "
		if running {
			action += "restart chronyd"
		} else {
			action += "start chronyd"
		}
	}
	restart := running && len(stale) > 0
	return &plan.Step{Host: n.Name, Action: action, Do: func(ctx context.Context) error {
		if err := plan.WriteFiles(ctx, nd, stale); err != nil {
			return err
		}
		// What Debian's unit and tmpfiles would have made.
		if err := plan.EnsureDir(ctx, nd, "/run/chrony", "_chrony", 0o750); err != nil {
			return err
		}
		if err := plan.EnsureDir(ctx, nd, "/var/lib/chrony", "_chrony", 0o750); err != nil {
			return err
		}
		return plan.EnsureService(ctx, nd, Service(t.SharedClock), restart)
	}}, nil
}

// burstStep asks a running chronyd that follows no source to poll its
// sources now ('chronyc burst'). After its process was stopped for a while
// (a frozen node, a paused VM), the clock jumped, or its sources were
// reset, chronyd has dropped its samples and would wait for its next
// regular poll (up to 64 s) before it selects a source again; a burst
// takes seconds, and is harmless when the sources are really gone. A
// chronyd that started less than a minute ago is still in its own initial
// burst and is left alone.
func burstStep(ctx context.Context, nd node.Node, n spec.Node, started time.Time) (*plan.Step, error) {
	if time.Since(started) < time.Minute {
		return nil, nil
	}
	st, err := Probe(ctx, nd, ProbeOptions{})
	if err != nil || st.Synchronised || len(st.Sources) == 0 {
		return nil, nil // not asked, or nothing a burst can do; status reports it
	}
	reachable := 0
	for _, src := range st.Sources {
		if src.Reach != 0 {
			reachable++
		}
	}
	return &plan.Step{Host: n.Name, Action: fmt.Sprintf("ask chronyd to poll its sources now (chronyc burst 4/4): it follows none (%d of %d answered lately)", reachable, len(st.Sources)), Do: func(ctx context.Context) error {
		_, err := nd.Run(ctx, node.Cmd{Argv: []string{"chronyc", "burst", "4/4"}})
		return err
	}}, nil
}
