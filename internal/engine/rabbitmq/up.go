package rabbitmq

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// ServiceName is the name of the broker under the node's supervisor.
const ServiceName = "rabbitmq"

// Folders the Debian package (its postinst and systemd unit) would have
// made; a node whose /var/lib or /var/log is fresh (a lab node, a rebuilt
// disk) needs them again.
const (
	HomeDir    = "/var/lib/rabbitmq"        // $HOME of the rabbitmq user: the cookie lives here
	MnesiaBase = "/var/lib/rabbitmq/mnesia" // one data folder per node name below it
	LogDir     = "/var/log/rabbitmq"        // rabbit@<node>.log
)

// Server is the broker's start script from Debian's package. Without
// systemd it keeps the Erlang VM as its child and turns SIGTERM into a clean
// broker shutdown; when the script dies any other way the supervisor kills
// its process group, the VM included, so no orphaned broker holds the ports.
const Server = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// How long a broker may take to boot. An Erlang VM with the management
// plugin boots in 5 to 15 s on a small machine, longer while it syncs
// Mnesia from its peers. After a full cluster stop a member waits for the
// peers it last saw (rabbit's mnesia_table_loading: 10 tries of 30 s) before
// it gives up, so those starts get that long and some.
const (
	bootTimeout        = 3 * time.Minute
	fullRestartTimeout = 6 * time.Minute
	// checkTimeout bounds the closing check: every node it waits for
	// has answered already, so this only covers the cluster settling.
	checkTimeout = time.Minute
)

// Service is how the supervisor runs the broker: Debian's script in the
// foreground as user rabbitmq, in its home like the package's systemd unit.
// The script reads /etc/rabbitmq/rabbitmq-env.conf (node name, ports) and
// the broker finds everything else from there.
func Service() node.Service {
	return node.Service{
		Name: ServiceName,
		Argv: []string{Server},
		User: User,
		Dir:  HomeDir,
		// HOME is where Erlang looks for the cookie. A UTF-8 locale makes
		// Erlang encode file names as UTF-8 (RabbitMQ warns when it runs
		// with latin1), whatever the supervisor's own environment.
		Env: []string{"HOME=" + HomeDir, "LANG=C.UTF-8", "LC_ALL=C.UTF-8"},
	}
}

// dirs are the folders the broker needs, with owner and mode as Debian's
// package makes them.
var dirs = []struct {
	path, owner string
	mode        fs.FileMode
}{
	{HomeDir, User, 0o755},
	{MnesiaBase, User, 0o750},
	{LogDir, User, 0o755},
}

// Phase brings up the RabbitMQ cluster on the controllers: files, folders,
// the broker started through the node's supervisor, the cluster formed by
// classic_config peer discovery, and the users, vhost, permissions and
// policy of definitions.json verified, with no guest user left.
//
// Blank nodes are started one at a time, the first controller first: a
// blank node that finds no running peer forms a cluster of its own, so two
// started together could make two clusters. Restarts are rolling, one node
// at a time, each waiting until it is back in the cluster.
func Phase() plan.Phase {
	return plan.Phase{Name: "rabbitmq", Plan: planPhase}
}

// env is what planning and the steps share. The secrets are read once,
// while planning: steps run in parallel, and a secrets store is not safe
// for concurrent use.
type env struct {
	t             *plan.Target
	ctls          []spec.Node
	adminPassword string
	defs          []byte // the rendered definitions.json
	// heal is the minority side of a partition that the phase restarts
	// by itself (refuse.go: healable).
	heal []*facts
}

// api is a management API client of node n, logged in as hastack's
// administrator.
func (e *env) api(n spec.Node) *mgmt {
	return newMgmt(n.Name, n.Address, e.t.Cluster.Spec.RabbitMQ.ManagementPort, AdminUser, e.adminPassword)
}

func (e *env) say(host, format string, a ...any) { e.t.Say("rabbitmq", host, format, a...) }

// newEnv renders every controller's files and returns the phase's shared
// state and one facts entry per controller, in spec order, not gathered
// yet. nil when the spec has no controllers.
func newEnv(t *plan.Target) (*env, []*facts, error) {
	ctls := t.Cluster.Controllers()
	if len(ctls) == 0 {
		return nil, nil, nil
	}
	e := &env{t: t, ctls: ctls, adminPassword: t.Secrets.Get(secrets.RabbitAdminPassword)}
	var err error
	if e.defs, err = Definitions(t.Cluster, t.Secrets); err != nil {
		return nil, nil, err
	}
	// Rendered up front, one node after the other: rendering reads the
	// secrets too.
	all := make([]*facts, len(ctls))
	for i, n := range ctls {
		files, err := Renderer{}.Files(t.Cluster, n, t.Secrets)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: rendering: %w", n.Name, err)
		}
		nd := t.Node(n.Name)
		if nd == nil {
			return nil, nil, fmt.Errorf("%s: no way to reach this node", n.Name)
		}
		all[i] = &facts{n: n, nd: nd, files: files}
	}
	return e, all, nil
}

// gatherAll gathers the facts of the given controllers in parallel.
func gatherAll(ctx context.Context, e *env, all []*facts) error {
	byName := map[string]*facts{}
	var names []string
	for _, f := range all {
		byName[f.n.Name] = f
		names = append(names, f.n.Name)
	}
	return plan.ForEach(ctx, names, func(ctx context.Context, name string) error {
		return gather(ctx, e, byName[name])
	})
}

func planPhase(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
	e, all, err := newEnv(t)
	if e == nil || err != nil {
		return nil, err
	}
	if err := gatherAll(ctx, e, all); err != nil {
		return nil, err
	}
	return planFrom(ctx, e, all)
}

// planFrom is the phase's plan from gathered facts: refusals, a partition
// heal, or the schedule of starts and restarts. 'up' gives it every
// controller; 'recover rabbitmq' the ones that answer.
func planFrom(ctx context.Context, e *env, all []*facts) ([]plan.Step, error) {
	if err := refuseUnsafe(e, all); err != nil {
		return nil, err
	}
	if len(e.heal) > 0 {
		// A partition with a clear minority: its brokers restart and
		// rejoin first; the rest of the plan waits for the next run,
		// made from the facts of a whole cluster.
		var steps []plan.Step
		for _, f := range e.heal {
			steps = append(steps, healStep(e, f, 0))
		}
		return append(steps, checkStep(e, all[0], nil, 1, namesOf(all))), nil
	}
	steps, wave, checked := schedule(e, all)
	if !checked {
		// Nothing to start and every node answers: is the running
		// cluster's provisioning still what the definitions say?
		fixes, err := drift(ctx, e.api(all[0].n), e.defs)
		if err != nil {
			return nil, err
		}
		if len(fixes) > 0 {
			steps = append(steps, checkStep(e, all[0], fixes, wave, namesOf(all)))
		}
	}
	return steps, nil
}

// namesOf is the set of the facts' controller names.
func namesOf(all []*facts) map[string]bool {
	out := map[string]bool{}
	for _, f := range all {
		out[f.n.Name] = true
	}
	return out
}
