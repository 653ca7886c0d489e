package endpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
)

// Services of the database endpoint on every controller.
const (
	AgentService      = "galera-health"
	HAProxyService    = "haproxy"
	KeepalivedService = "keepalived"
)

// AgentBinary is hastack's own binary, which runs the Galera health check
// on every controller. It is copied to a content-addressed path, so a new
// hastack never replaces the file under a running agent, and a changed
// binary shows up as a changed service definition.
type AgentBinary struct {
	Content []byte
	Path    string // on the nodes
}

// LoadAgentBinary reads this process's executable.
func LoadAgentBinary() (AgentBinary, error) {
	exe, err := os.Executable()
	if err != nil {
		return AgentBinary{}, err
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		return AgentBinary{}, fmt.Errorf("reading hastack's own binary to install its health agent: %w", err)
	}
	sum := sha256.Sum256(data)
	return AgentBinary{Content: data, Path: "/usr/local/lib/hastack/hastack-" + hex.EncodeToString(sum[:6])}, nil
}

// AgentServiceFor is the Galera health check of HAProxy on node n.
func AgentServiceFor(c *spec.Cluster, n spec.Node, binary string) node.Service {
	listen := net.JoinHostPort(n.Address, strconv.Itoa(c.Spec.Database.Endpoint.CheckPort))
	return node.Service{Name: AgentService, Argv: []string{binary, "agent", "galera-health", "--listen", listen}}
}

// HAProxy runs in the foreground in master-worker mode.
var HAProxy = node.Service{Name: HAProxyService, Argv: []string{"/usr/sbin/haproxy", "-W", "-db", "-f", HAProxyPath}}

// Keepalived runs in the foreground, logging to its output.
var Keepalived = node.Service{Name: KeepalivedService, Argv: []string{"/usr/sbin/keepalived", "--dont-fork", "--log-console", "--log-detail", "-f", KeepalivedPath}}

// Markers for steps on controllers where the endpoint already runs; Phase
// turns them into one wave per controller.
const (
	rolling       = -1
	rollingHolder = -2
)

// Phase brings up the database endpoint: the Galera health check, HAProxy
// (all writes to one Synced node) and keepalived (the VIP) on every
// controller.
func Phase(bin AgentBinary) plan.Phase {
	return plan.Phase{Name: "endpoint", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		ctls := t.Cluster.Controllers()
		steps := make([]*plan.Step, len(ctls))
		err := plan.ForEach(ctx, plan.Names(ctls), func(ctx context.Context, name string) error {
			i := slices.IndexFunc(ctls, func(n spec.Node) bool { return n.Name == name })
			s, err := nodeStep(ctx, t, ctls[i], bin)
			steps[i] = s
			return err
		})
		if err != nil {
			return nil, err
		}
		var out []plan.Step
		// Where the endpoint already runs, restart it one controller at a
		// time, the one holding the VIP last: restarting every HAProxy and
		// keepalived at once would cut the endpoint and re-elect the VIP.
		// A first deploy starts everywhere at once.
		wave := 0
		var holders []*plan.Step // one, unless keepalived has split
		for _, s := range steps {
			if s == nil {
				continue
			}
			if s.Wave == rollingHolder {
				holders = append(holders, s)
				continue
			}
			if s.Wave == rolling {
				wave++
				s.Wave = wave
			}
			out = append(out, *s)
		}
		for _, h := range holders {
			wave++
			h.Wave = wave
			out = append(out, *h)
		}
		return out, nil
	}}
}

func nodeStep(ctx context.Context, t *plan.Target, n spec.Node, bin AgentBinary) (*plan.Step, error) {
	nd := t.Node(n.Name)
	files, err := Renderer{}.Files(t.Cluster, n, t.Secrets)
	if err != nil {
		return nil, err
	}
	agentSvc := AgentServiceFor(t.Cluster, n, bin.Path)
	agentFile := engine.File{Path: bin.Path, Mode: 0o755, Content: bin.Content}
	stale, err := plan.StaleFiles(ctx, nd, append(files, agentFile))
	if err != nil {
		return nil, err
	}
	changed := map[string]bool{}
	for _, f := range stale {
		changed[f.Path] = true
	}
	sv := nd.Services()
	agentSt, err := sv.Status(ctx, AgentService)
	if err != nil {
		return nil, err
	}
	haSt, err := sv.Status(ctx, HAProxyService)
	if err != nil {
		return nil, err
	}
	kaSt, err := sv.Status(ctx, KeepalivedService)
	if err != nil {
		return nil, err
	}
	nonlocal, _ := plan.Sh(ctx, nd, "sysctl", "-n", "net.ipv4.ip_nonlocal_bind")

	var todo []string
	restartAgent := agentSt.Running && !slices.Equal(agentSt.Argv, agentSvc.Argv)
	startAgent := !agentSt.Running || restartAgent
	// A configuration on disk that the running process has not read (an
	// earlier 'up' wrote it and failed before the restart) counts as a
	// change too.
	for _, c := range []struct {
		st   node.ServiceState
		path string
	}{{haSt, HAProxyPath}, {kaSt, KeepalivedPath}} {
		if changed[c.path] {
			continue
		}
		newer, err := plan.NotReadSince(ctx, nd, c.st, c.path)
		if err != nil {
			return nil, err
		}
		changed[c.path] = newer
	}
	restartHA := haSt.Running && changed[HAProxyPath]
	startHA := !haSt.Running || restartHA
	restartKA := kaSt.Running && changed[KeepalivedPath]
	startKA := !kaSt.Running || restartKA
	applySysctl := changed[SysctlPath] || nonlocal != "1"
	if len(stale) > 0 {
		todo = append(todo, "write "+plan.Paths(stale))
	}
	if applySysctl {
		todo = append(todo, "set net.ipv4.ip_nonlocal_bind=1")
	}
	// HAProxy and keepalived read their configuration again in place: the
	// HAProxy master starts a new worker and hands the stick table over,
	// keepalived keeps the VIP where it is. So a changed server or peer
	// list (a node added or removed) moves neither the writes nor the VIP.
	for _, x := range []struct {
		start, restart, reload bool
		what                   string
	}{{startAgent, restartAgent, false, "the Galera health check on " + agentSvc.Argv[len(agentSvc.Argv)-1]}, {startHA, restartHA, true, "haproxy"}, {startKA, restartKA, true, "keepalived (VIP " + t.Cluster.Spec.Database.Endpoint.VIP + ")"}} {
		switch {
		case x.restart && x.reload:
			todo = append(todo, "reload "+x.what)
		case x.restart:
			todo = append(todo, "restart "+x.what)
		case x.start:
			todo = append(todo, "start "+x.what)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	wave := 0
	if agentSt.Running || haSt.Running || kaSt.Running {
		wave = rolling
		if out, err := plan.Sh(ctx, nd, "ip", "-o", "addr", "show", "to", t.Cluster.Spec.Database.Endpoint.VIP); err == nil && out != "" {
			wave = rollingHolder
		}
	}
	return &plan.Step{Host: n.Name, Action: strings.Join(todo, "; "), Wave: wave, Do: func(ctx context.Context) error {
		if err := plan.WriteFiles(ctx, nd, stale); err != nil {
			return err
		}
		if applySysctl {
			if _, err := nd.Run(ctx, node.Cmd{Argv: []string{"sysctl", "-q", "-p", SysctlPath}}); err != nil {
				return err
			}
		}
		if startAgent {
			if err := plan.EnsureService(ctx, nd, agentSvc, restartAgent); err != nil {
				return err
			}
		}
		if startHA {
			// Refuse a configuration HAProxy itself rejects before touching
			// the running one.
			if _, err := nd.Run(ctx, node.Cmd{Argv: []string{"/usr/sbin/haproxy", "-c", "-q", "-f", HAProxyPath}}); err != nil {
				return err
			}
			if err := plan.EnsureDir(ctx, nd, "/run/haproxy", "", 0o755); err != nil {
				return err
			}
			if restartHA {
				if err := plan.Reload(ctx, nd, haSt, syscall.SIGUSR2, HAProxyPath); err != nil {
					return err
				}
			} else if err := plan.EnsureService(ctx, nd, HAProxy, false); err != nil {
				return err
			}
		}
		if startKA {
			if restartKA {
				if _, err := nd.Run(ctx, node.Cmd{Argv: []string{"/usr/sbin/keepalived", "--config-test", "-f", KeepalivedPath}}); err != nil {
					return err
				}
				if err := plan.Reload(ctx, nd, kaSt, syscall.SIGHUP, KeepalivedPath); err != nil {
					return err
				}
			} else if err := plan.EnsureService(ctx, nd, Keepalived, false); err != nil {
				return err
			}
		}
		return nil
	}}, nil
}
