package drill

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// Faulter is what faults act through. Every primitive returns a line that
// says what it did. The lab implements every one from the host (signals to
// the node's processes, a firewall inside its network namespace); any
// node.Node implements those that its supervisor can do (NodeFaulter).
type Faulter interface {
	KillService(ctx context.Context, node, service string) (string, error)
	// KillNode kills every process of the node, as a power cut would.
	KillNode(ctx context.Context, node string) (string, error)
	Freeze(ctx context.Context, node string) (string, error)
	Thaw(ctx context.Context, node string) (string, error)
	Cut(ctx context.Context, node string) (string, error)
	Heal(ctx context.Context, node string) (string, error)
	// StopService stops a service gracefully (maintenance).
	StopService(ctx context.Context, node, service string) (string, error)
}

// NodeFaulter acts through node.Node alone: it works on real hosts over
// SSH. It signals the engines' supervised services (not sshd, not the
// host's own processes), and cannot cut a host off the network it is
// reached through.
type NodeFaulter struct {
	Nodes map[string]node.Node
	// Services are the engines a node-wide fault reaches.
	Services []string
}

// EngineServices are the services 'hastack up' runs on a controller.
var EngineServices = []string{"keepalived", "haproxy", "galera-health", "mariadb", "rabbitmq", "memcached", "chrony"}

func (f NodeFaulter) node(name string) (node.Node, error) {
	n, ok := f.Nodes[name]
	if !ok {
		return nil, fmt.Errorf("no node %q", name)
	}
	return n, nil
}

func (f NodeFaulter) signalAll(ctx context.Context, name string, sig syscall.Signal) (string, error) {
	n, err := f.node(name)
	if err != nil {
		return "", err
	}
	var done []string
	var errs []error
	for _, s := range f.Services {
		st, err := n.Services().Status(ctx, s)
		if err != nil || !st.Running {
			continue
		}
		if err := n.Services().Signal(ctx, s, sig); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, s)
	}
	sort.Strings(done)
	return fmt.Sprintf("%s: sent %s to %s", name, sig, strings.Join(done, " ")), errors.Join(errs...)
}

func (f NodeFaulter) KillService(ctx context.Context, name, svc string) (string, error) {
	n, err := f.node(name)
	if err != nil {
		return "", err
	}
	if err := n.Services().Signal(ctx, svc, syscall.SIGKILL); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: killed %s with SIGKILL", name, svc), nil
}

func (f NodeFaulter) KillNode(ctx context.Context, name string) (string, error) {
	return f.signalAll(ctx, name, syscall.SIGKILL)
}

func (f NodeFaulter) Freeze(ctx context.Context, name string) (string, error) {
	return f.signalAll(ctx, name, syscall.SIGSTOP)
}

func (f NodeFaulter) Thaw(ctx context.Context, name string) (string, error) {
	return f.signalAll(ctx, name, syscall.SIGCONT)
}

func (f NodeFaulter) Cut(ctx context.Context, name string) (string, error) {
	return "", fmt.Errorf("%s: cutting a host off the network hastack reaches it through is not supported over SSH", name)
}

func (f NodeFaulter) Heal(ctx context.Context, name string) (string, error) {
	return fmt.Sprintf("%s: nothing to heal", name), nil
}

func (f NodeFaulter) StopService(ctx context.Context, name, svc string) (string, error) {
	n, err := f.node(name)
	if err != nil {
		return "", err
	}
	if err := n.Services().Stop(ctx, svc, 60*time.Second); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: stopped %s", name, svc), nil
}

// Scenario is one way a controller fails, with its undo.
type Scenario struct {
	Name        string
	Description string
	// Breaks says what it will break, for the refusal on real hosts.
	Breaks string
	// OnCompute: the target is a compute node (default: a controller).
	OnCompute bool
	// Inject breaks things; Undo puts back what Inject did (thaw, heal).
	// Undo must be safe to call when Inject failed half-way.
	Inject func(ctx context.Context, f Faulter, e *Env, target string) ([]string, error)
	Undo   func(ctx context.Context, f Faulter, e *Env, target string) ([]string, error)
	// UpHeals: the heal is 'hastack up' (killed engines come back as after
	// a reboot).
	UpHeals bool
	// NoHold: Inject does the whole fault (rolling restart).
	NoHold bool
	// OnlyTarget: while the fault holds, status must name the target and
	// nothing else.
	OnlyTarget bool
	// CacheServers is how many memcached servers the fault reaches
	// (AllServers: every controller's); the cache's keys missed target
	// allows that share.
	CacheServers int
	// LabOnly: the fault cannot be done safely on hosts reached over SSH.
	LabOnly string
	// Explicit, when set, says why the scenario runs only when named:
	// --all leaves it out.
	Explicit string
}

// AllServers is a Scenario.CacheServers that reaches every controller.
const AllServers = -1

func one(line string, err error) ([]string, error) {
	if line == "" {
		return nil, err
	}
	return []string{line}, err
}

func nothing(context.Context, Faulter, *Env, string) ([]string, error) { return nil, nil }

// Scenarios lists every scenario, in the order --all runs them.
func Scenarios() []Scenario {
	kill := func(svc, what string) Scenario {
		cacheHit := 0
		if svc == "memcached" {
			cacheHit = 1
		}
		return Scenario{
			Name: "kill-" + what, Description: "SIGKILL " + svc + " on the target; 'hastack up' starts it again",
			Breaks: svc + " on the target is killed", UpHeals: true, Undo: nothing, CacheServers: cacheHit,
			Inject: func(ctx context.Context, f Faulter, _ *Env, t string) ([]string, error) {
				return one(f.KillService(ctx, t, svc))
			},
		}
	}
	return []Scenario{
		kill("mariadb", "db"), kill("rabbitmq", "mq"), kill("memcached", "cache"),
		{
			Name: "freeze-node", Description: "SIGSTOP every process of the target (a hung host), hold, thaw",
			Breaks: "every process of the target is stopped for the hold", CacheServers: 1,
			Inject: func(ctx context.Context, f Faulter, _ *Env, t string) ([]string, error) { return one(f.Freeze(ctx, t)) },
			Undo:   func(ctx context.Context, f Faulter, _ *Env, t string) ([]string, error) { return one(f.Thaw(ctx, t)) },
		},
		{
			Name: "cut-node", Description: "drop every packet on the target's management NIC (a vanished host, no TCP reset), hold, heal",
			Breaks: "the target is cut off the management network for the hold", CacheServers: 1,
			LabOnly: "cutting a host off the management network would cut hastack's own SSH session to it (and the heal with it); it runs on a lab only",
			Inject:  func(ctx context.Context, f Faulter, _ *Env, t string) ([]string, error) { return one(f.Cut(ctx, t)) },
			Undo:    func(ctx context.Context, f Faulter, _ *Env, t string) ([]string, error) { return one(f.Heal(ctx, t)) },
		},
		{
			Name: "kill-node", Description: "SIGKILL every process of the target; 'hastack up' starts its engines as after a reboot",
			Breaks: "every engine on the target is killed", UpHeals: true, Undo: nothing, CacheServers: 1,
			Inject: func(ctx context.Context, f Faulter, _ *Env, t string) ([]string, error) {
				return one(f.KillNode(ctx, t))
			},
		},
		{
			Name: "rolling-restart", Description: "'hastack restart --engine memcached,galera,rabbitmq': each controller's engines in turn, drained of their clients first (writes, RabbitMQ maintenance mode), stopped, started by 'up', wait healthy, next",
			Breaks: "every controller's engines are restarted in turn", NoHold: true, Undo: nothing, CacheServers: AllServers,
			Inject: rollingRestart,
		},
		{
			Name: "remove-add", Description: "'hastack node remove' the target, then 'hastack node add' it back: a membership change each way (needs partitionHandling autoheal, as 2 controllers do)",
			Breaks: "the target leaves the cluster, then joins it again as a new member", NoHold: true, Undo: nothing, CacheServers: 1,
			Explicit: "it rewrites the spec file (and puts it back as it was), and needs partitionHandling autoheal",
			Inject: func(ctx context.Context, _ Faulter, e *Env, t string) ([]string, error) {
				if e.Membership == nil {
					return nil, errors.New("remove-add needs hastack's node commands (Env.Membership)")
				}
				return e.Membership(ctx, t)
			},
		},
		{
			Name: "power-loss", Description: "SIGKILL every process of every controller at once; 'hastack up' recovers the cluster",
			Breaks: "every engine on every controller is killed", UpHeals: true, Undo: nothing, CacheServers: AllServers,
			Inject: func(ctx context.Context, f Faulter, e *Env, _ string) ([]string, error) {
				var log []string
				var errs []error
				for _, c := range e.Controllers {
					l, err := f.KillNode(ctx, c)
					log = append(log, l)
					errs = append(errs, err)
				}
				return log, errors.Join(errs...)
			},
		},
		{
			Name: "clock-stop", Description: "SIGKILL chronyd on a compute node; status must name it, nothing else degrades; 'hastack up' starts it",
			Breaks: "chronyd on the compute node is killed", OnCompute: true, UpHeals: true, OnlyTarget: true, Undo: nothing,
			Inject: func(ctx context.Context, f Faulter, _ *Env, t string) ([]string, error) {
				return one(f.KillService(ctx, t, "chrony"))
			},
		},
	}
}

// RollingRestartEngines are the engines the rolling-restart scenario
// restarts: those the workloads are clients of.
var RollingRestartEngines = []string{"memcached", "galera", "rabbitmq"}

// rollingRestart is 'hastack restart' (Env.Restart): every node's engines
// in turn, each drained of its clients first. Without it (an Env made by
// hand), each controller's engines are stopped gracefully and 'up' starts
// them.
func rollingRestart(ctx context.Context, f Faulter, e *Env, _ string) ([]string, error) {
	if e.Restart != nil {
		return e.Restart(ctx)
	}
	var log []string
	for _, c := range e.Controllers {
		for _, svc := range []string{"rabbitmq", "mariadb", "memcached"} {
			l, err := f.StopService(ctx, c, svc)
			if err != nil {
				return log, err
			}
			log = append(log, l)
		}
		acted, did, err := e.Up(ctx)
		if err != nil {
			return log, fmt.Errorf("up after restarting %s: %w", c, err)
		}
		if acted {
			log = append(log, fmt.Sprintf("%s: up: %s", c, strings.Join(did, "; ")))
		}
		if _, ok := e.waitHealthy(ctx, 2*time.Minute); !ok {
			return log, fmt.Errorf("status not healthy within 2m after restarting %s", c)
		}
	}
	return log, nil
}

// Find returns the scenario by name.
func Find(name string) (Scenario, bool) {
	for _, s := range Scenarios() {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// Names lists every scenario's name.
func Names() []string {
	var out []string
	for _, s := range Scenarios() {
		out = append(out, s.Name)
	}
	return out
}
