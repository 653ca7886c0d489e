package memcached

import (
	"context"
	"strings"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
)

// Service runs memcached with the options of the rendered
// /etc/memcached.conf (Debian's format: one option per line), so the file
// an operator reads is exactly what runs. memcached drops to user memcache
// itself (-u in the file).
func Service(conf []byte) node.Service {
	argv := []string{"/usr/bin/memcached"}
	for _, line := range strings.Split(string(conf), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		argv = append(argv, strings.Fields(line)...)
	}
	return node.Service{Name: "memcached", Argv: argv}
}

// Phase runs one memcached per controller, bound to its management address.
func Phase() plan.Phase {
	return plan.Phase{Name: "memcached", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		return plan.NodeSteps(ctx, t.Cluster.Controllers(), func(ctx context.Context, n spec.Node) (*plan.Step, error) {
			return nodeStep(ctx, t, n)
		})
	}}
}

func nodeStep(ctx context.Context, t *plan.Target, n spec.Node) (*plan.Step, error) {
	nd := t.Node(n.Name)
	files, err := Renderer{}.Files(t.Cluster, n, t.Secrets)
	if err != nil || len(files) == 0 {
		return nil, err
	}
	stale, err := plan.StaleFiles(ctx, nd, files)
	if err != nil {
		return nil, err
	}
	st, err := nd.Services().Status(ctx, "memcached")
	if err != nil {
		return nil, err
	}
	running := st.Running
	if running && len(stale) == 0 {
		// Written by an earlier 'up' that failed before the restart: the
		// running process has not read it.
		newer, err := plan.NotReadSince(ctx, nd, st, files[0].Path)
		if err != nil {
			return nil, err
		}
		if newer {
			stale = files
		}
	}
	if len(stale) == 0 && running {
		return nil, nil
	}
	restart := running && len(stale) > 0
	action := "start memcached on " + n.Address
	if len(stale) > 0 {
		action = "write " + plan.Paths(stale) + " and " + map[bool]string{true: "restart", false: "start"}[restart] + " memcached on " + n.Address
	}
	return &plan.Step{Host: n.Name, Action: action, Do: func(ctx context.Context) error {
		if err := plan.WriteFiles(ctx, nd, stale); err != nil {
			return err
		}
		return plan.EnsureService(ctx, nd, Service(files[0].Content), restart)
	}}, nil
}
