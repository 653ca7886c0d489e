package rabbitmq

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/engine"
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

// facts is what planning learns of one controller.
type facts struct {
	n     spec.Node
	nd    node.Node
	files []engine.File
	stale []engine.File
	// changed lists the stale files whose content (not just mode or
	// owner) differs: only those call for a restart.
	changed []engine.File
	// cookieChanged: the Erlang cookie on the node differs from the
	// secrets file's.
	cookieChanged bool
	dirsOK        bool
	running       bool
	// hasData: the node's Mnesia folder holds a database, so it was a
	// cluster member before and rejoins its cluster by itself on start.
	hasData bool
	// runningAtShutdown: the members the node last saw running (its
	// nodes_running_at_shutdown file); nil when unknown. A stopped node
	// waits at boot until one of them runs, unless forceBoot (the
	// force_load file 'rabbitmqctl force_boot' leaves) says not to.
	runningAtShutdown []string
	forceBoot         bool
	// major is the installed RabbitMQ's major version (0: unknown).
	major int
	// apiErr is nil when the management API answered /api/nodes with
	// members; it is only asked when the service runs.
	apiErr  error
	members []clusterNode
}

func (f *facts) answers() bool { return f.running && f.apiErr == nil }

// needsRestart: the broker runs with configuration older than its files.
// definitions.json is left out: its users and policies are applied to the
// running cluster through the management API instead (the closing check),
// and every later boot imports the file anyway.
func (f *facts) needsRestart() bool {
	if !f.running {
		return false
	}
	for _, c := range f.changed {
		if c.Path != DefinitionsPath {
			return true
		}
	}
	return false
}

// env is what planning and the steps share. The secrets are read once,
// while planning: steps run in parallel, and a secrets store is not safe
// for concurrent use.
type env struct {
	t             *plan.Target
	ctls          []spec.Node
	adminPassword string
	defs          []byte // the rendered definitions.json
}

// api is a management API client of node n, logged in as hastack's
// administrator.
func (e *env) api(n spec.Node) *mgmt {
	return newMgmt(n.Name, n.Address, e.t.Cluster.Spec.RabbitMQ.ManagementPort, AdminUser, e.adminPassword)
}

func (e *env) say(host, format string, a ...any) { e.t.Say("rabbitmq", host, format, a...) }

func planPhase(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
	ctls := t.Cluster.Controllers()
	if len(ctls) == 0 {
		return nil, nil
	}
	e := &env{t: t, ctls: ctls, adminPassword: t.Secrets.Get(secrets.RabbitAdminPassword)}
	var err error
	if e.defs, err = Definitions(t.Cluster, t.Secrets); err != nil {
		return nil, err
	}
	// Rendered up front, one node after the other: rendering reads the
	// secrets too.
	all := make([]*facts, len(ctls))
	byName := map[string]*facts{}
	for i, n := range ctls {
		files, err := Renderer{}.Files(t.Cluster, n, t.Secrets)
		if err != nil {
			return nil, fmt.Errorf("%s: rendering: %w", n.Name, err)
		}
		nd := t.Node(n.Name)
		if nd == nil {
			return nil, fmt.Errorf("%s: no way to reach this node", n.Name)
		}
		all[i] = &facts{n: n, nd: nd, files: files}
		byName[n.Name] = all[i]
	}
	err = plan.ForEach(ctx, plan.Names(ctls), func(ctx context.Context, name string) error {
		return gather(ctx, e, byName[name])
	})
	if err != nil {
		return nil, err
	}
	if err := refuseUnsafe(e, all); err != nil {
		return nil, err
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
			steps = append(steps, checkStep(e, all[0], fixes, wave))
		}
	}
	return steps, nil
}

// schedule turns the facts into steps and waves. It returns the next free
// wave and whether the closing check is among the steps.
func schedule(e *env, all []*facts) (steps []plan.Step, nextWave int, checked bool) {
	// Wave 0: folders and files, every node at once. Files are written
	// before any (re)start so each broker boots with its final
	// configuration.
	for _, f := range all {
		if s := prepareStep(f); s != nil {
			steps = append(steps, *s)
		}
	}

	// Wave 1: brokers that run but do not answer yet (booting, or waiting
	// for their peers' tables) are waited for, not restarted: a restart
	// would only start that wait over.
	up := map[string]bool{} // nodes expected to run in the cluster as the waves go
	var waited []*facts
	for _, f := range all {
		if !f.running {
			continue
		}
		up[f.n.Name] = true
		if f.apiErr != nil && !f.needsRestart() {
			steps = append(steps, waitStep(e, f, 1))
			waited = append(waited, f)
		}
	}

	wave := 2
	var touched []*facts // nodes started or restarted, in order
	var toStart []*facts
	for _, f := range all {
		if !f.running {
			toStart = append(toStart, f)
		}
	}
	if len(up) == 0 && len(toStart) > 0 {
		// Nothing runs. Former members (with data) must start together:
		// each waits at boot for the peers it saw last, so starting them
		// one at a time could wait on a node not started yet. Blank nodes
		// then join one at a time; when every node is blank, the first
		// controller forms the cluster alone.
		var withData, blank []*facts
		for _, f := range toStart {
			if f.hasData {
				withData = append(withData, f)
			} else {
				blank = append(blank, f)
			}
		}
		if len(withData) > 0 {
			group := map[string]bool{}
			for _, f := range withData {
				group[f.n.Name] = true
			}
			for _, f := range withData {
				steps = append(steps, startStep(e, f, wave, startTogether, group, false))
				touched = append(touched, f)
			}
			maps.Copy(up, group)
			wave++
		}
		toStart = blank
		if len(withData) == 0 && formsTogether(blank) {
			group := map[string]bool{}
			for _, f := range blank {
				group[f.n.Name] = true
			}
			for _, f := range blank {
				steps = append(steps, startStep(e, f, wave, startFormTogether, group, false))
				touched = append(touched, f)
			}
			maps.Copy(up, group)
			wave++
			toStart = nil
		}
	}
	for _, f := range toStart {
		how := startJoin
		switch {
		case len(up) == 0:
			how = startFirst
		case f.hasData:
			how = startRejoin
		}
		up[f.n.Name] = true
		steps = append(steps, startStep(e, f, wave, how, maps.Clone(up), false))
		touched = append(touched, f)
		wave++
	}
	// Rolling restarts last, once every node that was down runs again:
	// the cluster keeps its majority throughout.
	for _, f := range all {
		if f.needsRestart() {
			steps = append(steps, startStep(e, f, wave, startRestart, maps.Clone(up), true))
			touched = append(touched, f)
			wave++
		}
	}

	// The closing check runs after any start or wait, through the node
	// started last (the one whose view is newest).
	var host *facts
	switch {
	case len(touched) > 0:
		host = touched[len(touched)-1]
	case len(waited) > 0:
		host = waited[len(waited)-1]
	default:
		return steps, wave, false
	}
	return append(steps, checkStep(e, host, nil, wave)), wave + 1, true
}

// gather learns the facts of one controller.
func gather(ctx context.Context, e *env, f *facts) error {
	var err error
	if f.stale, err = plan.StaleFiles(ctx, f.nd, f.files); err != nil {
		return err
	}
	for _, s := range f.stale {
		have, err := f.nd.ReadFile(ctx, s.Path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err != nil || !bytes.Equal(have, s.Content) {
			f.changed = append(f.changed, s)
			// A missing cookie is a node never set up, not a changed one.
			if s.Path == CookiePath && err == nil {
				f.cookieChanged = true
			}
		}
	}
	if f.dirsOK, err = dirsOK(ctx, f.nd); err != nil {
		return err
	}
	if f.running, err = plan.Running(ctx, f.nd, ServiceName); err != nil {
		return err
	}
	f.major = installedMajor(ctx, f.nd)
	res, err := f.nd.Run(ctx, node.Cmd{Argv: []string{"test", "-e", mnesiaDir(f.n) + "/schema.DAT"}})
	var ce *node.CommandError
	switch {
	case err == nil:
		f.hasData = true
	case errors.As(err, &ce) && res.ExitCode == 1:
	default:
		return err
	}
	if f.hasData && !f.running {
		data, err := f.nd.ReadFile(ctx, mnesiaDir(f.n)+"/nodes_running_at_shutdown")
		switch {
		case err == nil:
			f.runningAtShutdown = erlangAtoms(string(data))
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		_, err = f.nd.ReadFile(ctx, mnesiaDir(f.n)+"/force_load")
		switch {
		case err == nil:
			f.forceBoot = true
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	if f.running {
		f.members, f.apiErr = e.api(f.n).nodes(ctx)
	}
	return nil
}

// erlangAtoms reads a list of atoms as RabbitMQ writes it, e.g.
// "[rabbit@ctl1,'rabbit@ctl-2'].", into names.
func erlangAtoms(term string) []string {
	term = strings.TrimSpace(term)
	term = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(term, "."), "["), "]")
	var out []string
	for _, a := range strings.Split(term, ",") {
		if a = strings.Trim(strings.TrimSpace(a), "'"); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// mnesiaDir is the node's database folder (RABBITMQ_MNESIA_DIR).
func mnesiaDir(n spec.Node) string { return MnesiaBase + "/" + NodeName(n) }

// dirsOK reports whether every folder exists with its owner and mode.
func dirsOK(ctx context.Context, nd node.Node) (bool, error) {
	argv := []string{"stat", "-c", "%n %U %a"}
	for _, d := range dirs {
		argv = append(argv, d.path)
	}
	res, err := nd.Run(ctx, node.Cmd{Argv: argv})
	var ce *node.CommandError
	if err != nil && !errors.As(err, &ce) {
		return false, err
	}
	if err != nil {
		return false, nil // one is missing; stat exits 1 after printing the others
	}
	have := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	for i, d := range dirs {
		if i >= len(have) || have[i] != fmt.Sprintf("%s %s %o", d.path, d.owner, d.mode.Perm()) {
			return false, nil
		}
	}
	return true, nil
}

// refuseUnsafe refuses what no step of this phase should repair on its own:
// two clusters, a partition, members the spec does not have, a management
// API that refuses hastack's administrator, a cookie changed under a
// running cluster. Each error says what to do.
func refuseUnsafe(e *env, all []*facts) error {
	var errs []error
	want := map[string]bool{}
	for _, f := range all {
		want[NodeName(f.n)] = true
	}
	// Nodes in one cluster share one member list. Group the answering
	// nodes by theirs; more than one group means separate clusters.
	groups := map[string][]string{}
	var keys []string
	nodesRunning := 0
	partitioned := map[string][]string{} // member: the members it cannot reach, as any node reports them
	for _, f := range all {
		if f.running {
			nodesRunning++
		}
		if f.running && isStatus(f.apiErr, http.StatusUnauthorized) && !f.needsRestart() {
			errs = append(errs, fmt.Errorf("%s: the management API refuses hastack's administrator: %w; if the secrets file was replaced, put back the one that deployed this cluster", f.n.Name, f.apiErr))
		}
		if !f.answers() {
			continue
		}
		var names []string
		for _, m := range f.members {
			names = append(names, m.Name)
			for _, p := range m.Partitions {
				if !slices.Contains(partitioned[m.Name], p) {
					partitioned[m.Name] = append(partitioned[m.Name], p)
				}
			}
			if !want[m.Name] {
				errs = append(errs, strayError(m.Name))
			}
		}
		slices.Sort(names)
		k := strings.Join(names, ", ")
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], f.n.Name)
	}
	// A stopped node with data that a running cluster does not list was a
	// member of another cluster (or was removed from this one): started,
	// it would refuse to boot, or worse, bring that other cluster back.
	for _, k := range keys {
		members := strings.Split(k, ", ")
		var strangers []string
		for _, f := range all {
			if !f.running && f.hasData && !slices.Contains(members, NodeName(f.n)) {
				strangers = append(strangers, f.n.Name)
			}
		}
		if len(strangers) > 0 {
			errs = append(errs, strangerError(groups[k], k, strangers))
		}
	}
	if len(partitioned) > 0 {
		errs = append(errs, partitionError(e, partitioned, len(all)))
	}
	if nodesRunning == 0 {
		if err := deadlockedStart(all); err != nil {
			errs = append(errs, err)
		}
	}
	if len(keys) > 1 {
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s see members [%s]", strings.Join(groups[k], ", "), k))
		}
		first := NodeName(all[0].n)
		errs = append(errs, fmt.Errorf("the controllers run as %d separate RabbitMQ clusters (%s): a node started blank while it could not reach its peers formed a cluster of its own. "+
			"To join such a node to the cluster of %s, discarding that node's own messages and definitions, run on it: rabbitmqctl stop_app; rabbitmqctl reset; rabbitmqctl join_cluster %s; rabbitmqctl start_app. Then run 'hastack up' again",
			len(keys), strings.Join(parts, "; "), first, first))
	}
	for _, f := range all {
		if f.running && f.cookieChanged && nodesRunning > 1 {
			errs = append(errs, fmt.Errorf("%s: the Erlang cookie differs from the secrets file's while the broker runs in a cluster: restarting the nodes one at a time with a new cookie would leave them unable to talk to each other. "+
				"Put back the secrets file that deployed this cluster, or stop rabbitmq on every controller (an outage) and run 'hastack up' again", f.n.Name))
		}
	}
	// Every node reports the same partition or stray member: say it once.
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	slices.Sort(msgs)
	msgs = slices.Compact(msgs)
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// deadlockedStart refuses a full-cluster start that cannot succeed: the
// stopped members with data all wait at boot for a peer they last saw
// running, and every such peer is blank now (rebuilt) or no controller
// any more, so it can only join once they run. They would wait for
// rabbit's table timeout (5 minutes) and fail.
func deadlockedStart(all []*facts) error {
	starting := map[string]bool{}
	for _, f := range all {
		if f.hasData {
			starting[NodeName(f.n)] = true
		}
	}
	if len(starting) == 0 {
		return nil
	}
	var stuck []string
	missing := map[string]bool{}
	for _, f := range all {
		if !f.hasData {
			continue
		}
		if f.forceBoot || f.runningAtShutdown == nil {
			return nil // this one boots; the others load from it
		}
		var waits []string
		for _, p := range f.runningAtShutdown {
			if p != NodeName(f.n) && !starting[p] {
				waits = append(waits, p)
			}
		}
		if len(waits) == 0 {
			return nil
		}
		stuck = append(stuck, f.n.Name)
		for _, w := range waits {
			missing[w] = true
		}
	}
	gone := slices.Sorted(maps.Keys(missing))
	who := strings.Join(stuck, ", ") + " each wait"
	if len(stuck) == 1 {
		who = stuck[0] + " waits"
	}
	return fmt.Errorf("no broker runs, and %s at boot for %s, which they last saw running but which has no data now (rebuilt, wiped, or no longer a controller), so it cannot come up before them: they would wait 5 minutes and fail. "+
		"If that data is gone for good, let one of them boot without waiting: on %s (the one that stopped last, if you know it) run 'rabbitmqctl force_boot', then run 'hastack up' again",
		who, strings.Join(gone, ", "), stuck[0])
}

// strangerError explains a cluster running on nodes without stopped
// nodes that hold data of a cluster of their own, and how to keep one.
func strangerError(running []string, members string, strangers []string) error {
	var names []string
	for _, s := range strangers {
		names = append(names, "rabbit@"+s)
	}
	verb := "run"
	if len(running) == 1 {
		verb = "runs"
	}
	return fmt.Errorf("%s %s a cluster of [%s] that does not include %s, which hold the data of another RabbitMQ cluster (or were removed from this one): started, they would not join it. "+
		"Keep one of the two clusters and wipe the nodes of the other: with the broker stopped, remove /var/lib/rabbitmq/mnesia/rabbit@<node>* on each, then run 'hastack up' again, and the wiped nodes join the cluster kept. "+
		"To keep the running cluster, wipe %s; to keep the other, stop the broker on %s and wipe it instead",
		strings.Join(running, ", "), verb, members, strings.Join(names, ", "), strings.Join(strangers, ", "), strings.Join(running, ", "))
}

// partitionError explains a partition (every member reports the same, so
// it names no reporting node) and names the side to restart: the members
// cut off from more than half of the others. The remedy is RabbitMQ's own
// (what autoheal does by itself): restart the brokers of the minority so
// they rejoin the majority, dropping what only they received since the
// split. With no majority side, it says so and names none.
func partitionError(e *env, partitioned map[string][]string, clusterSize int) error {
	var lines, minority []string
	for _, m := range slices.Sorted(maps.Keys(partitioned)) {
		slices.Sort(partitioned[m])
		lines = append(lines, fmt.Sprintf("%s cannot reach %s", m, strings.Join(partitioned[m], ", ")))
		if 2*len(partitioned[m]) > clusterSize-1 {
			minority = append(minority, m)
		}
	}
	head := fmt.Sprintf("RabbitMQ is partitioned (%s); partition handling is %s", strings.Join(lines, "; "), e.t.Cluster.Spec.RabbitMQ.PartitionHandling)
	if len(minority) == 0 || 2*len(minority) >= clusterSize {
		return fmt.Errorf("%s. No node is cut off from a majority of the %d nodes (a partial partition, an even split, or a view not updated yet: a broker restarted a few seconds ago still shows in its peers' list for about 15 s), so hastack names none to restart. "+
			"If you just restarted one, wait and run 'hastack up' again; otherwise choose the side whose data to keep and restart the broker on every node of the other side ('rabbitmqctl stop_app; rabbitmqctl start_app' there), then run 'hastack up' again", head, clusterSize)
	}
	hosts := make([]string, len(minority))
	for i, m := range minority {
		_, hosts[i], _ = strings.Cut(m, "@")
	}
	return fmt.Errorf("%s. The minority side is %s: once the network between the nodes works (a frozen or paused node stays partitioned after it resumes), restart the broker there so it rejoins the majority, discarding what only it received since the split: on %s run 'rabbitmqctl stop_app; rabbitmqctl start_app', then run 'hastack up' again",
		head, strings.Join(hosts, ", "), strings.Join(hosts, " and "))
}

func strayError(member string) error {
	return fmt.Errorf("the cluster has member %s, which is no controller of the spec: if that node is gone for good, remove it with 'rabbitmqctl forget_cluster_node %s' on a running controller", member, member)
}

func prepareStep(f *facts) *plan.Step {
	if f.dirsOK && len(f.stale) == 0 {
		return nil
	}
	var what []string
	if !f.dirsOK {
		p := make([]string, len(dirs))
		for i, d := range dirs {
			p[i] = d.path
		}
		what = append(what, "create "+strings.Join(p, ", ")+" (owner "+User+")")
	}
	if len(f.stale) > 0 {
		what = append(what, "write "+plan.Paths(f.stale))
	}
	nd, stale := f.nd, f.stale
	return &plan.Step{Host: f.n.Name, Wave: 0, Action: strings.Join(what, "; "), Do: func(ctx context.Context) error {
		// Folders first: writing the cookie would otherwise create
		// /var/lib/rabbitmq owned by root.
		for _, d := range dirs {
			if err := plan.EnsureDir(ctx, nd, d.path, d.owner, d.mode); err != nil {
				return err
			}
		}
		return plan.WriteFiles(ctx, nd, stale)
	}}
}

func waitStep(e *env, f *facts, wave int) plan.Step {
	return plan.Step{Host: f.n.Name, Wave: wave,
		Action: fmt.Sprintf("wait until %s answers on its management API (it runs but did not answer yet)", NodeName(f.n)),
		Do: func(ctx context.Context) error {
			return waitMember(ctx, e, f, map[string]bool{f.n.Name: true}, bootTimeout)
		}}
}

type startHow int

const (
	startFirst        startHow = iota // a blank node forming the cluster
	startJoin                         // a blank node joining the running cluster
	startRejoin                       // a former member coming back
	startRestart                      // a running member restarted for its new configuration
	startTogether                     // a former member started with the others after a full stop
	startFormTogether                 // blank nodes of RabbitMQ 4 forming the cluster at once
)

// startStep starts (or restarts) the broker on one node and waits until it
// runs in the cluster with every node of expect.
func startStep(e *env, f *facts, wave int, how startHow, expect map[string]bool, restart bool) plan.Step {
	n := f.n
	verb, why := "start", ""
	if restart {
		var p []string
		for _, c := range f.changed {
			if c.Path != DefinitionsPath {
				p = append(p, c.Path)
			}
		}
		verb, why = "restart", " for the changed "+strings.Join(p, ", ")
	}
	timeout := bootTimeout
	var then string
	switch how {
	case startFirst:
		then = fmt.Sprintf("first node: it forms cluster %s; wait until its management API answers", e.t.Cluster.Metadata.Name)
	case startJoin:
		then = "wait until it joins " + strings.Join(e.nodeNames(expect, n.Name), ", ")
	case startRejoin, startRestart:
		then = "wait until it is back in the cluster with " + strings.Join(e.nodeNames(expect, n.Name), ", ")
	case startTogether:
		then = "with the other former members at once (each waits for the others at boot); wait until " + strings.Join(e.nodeNames(expect, ""), ", ") + " run"
		timeout = fullRestartTimeout
	case startFormTogether:
		then = "with the other blank nodes at once (RabbitMQ 4's peer discovery waits for every listed node); wait until " + strings.Join(e.nodeNames(expect, ""), ", ") + " run"
		timeout = fullRestartTimeout
	}
	return plan.Step{Host: n.Name, Wave: wave,
		Action: fmt.Sprintf("%s rabbitmq-server (%s)%s; %s", verb, NodeName(n), why, then),
		Do: func(ctx context.Context) error {
			for attempt := 1; ; attempt++ {
				if err := plan.EnsureService(ctx, f.nd, Service(), restart && attempt == 1); err != nil {
					return fmt.Errorf("%w%s", err, logTails(ctx, f))
				}
				err := waitMember(ctx, e, f, expect, timeout)
				if err == nil || attempt == featureFlagRaceAttempts || !featureFlagRace(err) {
					return err
				}
				again := "starting it again"
				if f.forceBoot {
					// The failed boot used up the force_load file that let
					// this node boot without waiting for its peers; without
					// it the node would wait for the others, and they for it.
					if _, ferr := f.nd.Run(ctx, node.Cmd{Argv: []string{"rabbitmqctl", "force_boot"}}); ferr != nil {
						return fmt.Errorf("%w\n(after that, 'rabbitmqctl force_boot' to boot it again without waiting for its peers failed: %v)", err, ferr)
					}
					again = "running 'rabbitmqctl force_boot' again (the failed boot used it up) and starting it again"
				}
				e.say(n.Name, "%s stopped at boot in RabbitMQ's feature-flag race between nodes booting at the same moment (badrpc while syncing feature flags); %s (attempt %d of %d)", NodeName(n), again, attempt+1, featureFlagRaceAttempts)
			}
		}}
}

// featureFlagRaceAttempts bounds the starts of a node that keeps failing
// with featureFlagRace.
const featureFlagRaceAttempts = 3

// featureFlagRace reports whether a boot failed on RabbitMQ 3.10's race
// between nodes that boot at the same moment: one asks the other to sync
// feature flags before the other's registry is loaded, gets a badrpc
// (badmap undefined) and stops with incompatible_feature_flags. Nothing
// is wrong with either node; started again, it boots. It is seen when
// former members start together after a full stop (measured: once in a few
// CI runs of TestIntegrationRabbitMQPhase).
func featureFlagRace(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "while booting") && strings.Contains(msg, "incompatible_feature_flags") && strings.Contains(msg, "badrpc")
}

// nodeNames lists the Erlang names of the controllers in set, in spec
// order, leaving out skip.
func (e *env) nodeNames(set map[string]bool, skip string) []string {
	var out []string
	for _, n := range e.ctls {
		if set[n.Name] && n.Name != skip {
			out = append(out, NodeName(n))
		}
	}
	return out
}

// supervisorGrace is how long waitMember tolerates a supervisor that does
// not answer (a dropped SSH connection, a busy lab init) before it gives
// up on the node.
const supervisorGrace = 30 * time.Second

// waitMember waits until node f's management API answers and shows it and
// every node of expect running in one cluster. It fails at once when the
// broker exits, or when the node answers from a cluster that lacks a peer
// of expect (it formed a cluster of its own): waiting would mend neither.
func waitMember(ctx context.Context, e *env, f *facts, expect map[string]bool, timeout time.Duration) error {
	n, api := f.n, e.api(f.n)
	var fatal error
	start := time.Now()
	lastSay, supervisorOK := start, start
	err := plan.WaitFor(ctx, fmt.Sprintf("%s running in the cluster", NodeName(n)), timeout, func(ctx context.Context) (bool, string) {
		st, err := f.nd.Services().Status(ctx, ServiceName)
		if err != nil {
			if time.Since(supervisorOK) > supervisorGrace {
				fatal = fmt.Errorf("%s: the node's supervisor does not answer: %w", n.Name, err)
				return true, ""
			}
			return false, err.Error()
		}
		supervisorOK = time.Now()
		if !st.Running {
			how := fmt.Sprintf("exited with code %d", st.ExitCode)
			if st.Signal != "" {
				how = "was killed by " + st.Signal
			}
			fatal = fmt.Errorf("%s: %s %s while booting%s", n.Name, Server, how, logTails(ctx, f))
			return true, ""
		}
		members, err := api.nodes(ctx)
		if err != nil {
			// A slow boot says now and then what the broker is at, which
			// its log tells best (waiting for tables, syncing...).
			if time.Since(lastSay) > 20*time.Second {
				e.say(n.Name, "%s still booting (%s); its log: %s", NodeName(n), time.Since(start).Round(time.Second), lastLogLine(ctx, f))
				lastSay = time.Now()
			}
			return false, err.Error()
		}
		seen := map[string]clusterNode{}
		for _, m := range members {
			seen[m.Name] = m
		}
		var missing, down []string
		for _, name := range e.nodeNames(expect, "") {
			m, ok := seen[name]
			switch {
			case !ok:
				missing = append(missing, name)
			case !m.Running:
				down = append(down, name)
			}
		}
		if len(missing) > 0 {
			// Membership is settled before the management API starts, so
			// an answer without an expected peer is a separate cluster.
			var names []string
			for _, m := range members {
				names = append(names, m.Name)
			}
			fatal = fmt.Errorf("%s: %s runs outside the cluster of %s: its cluster has members [%s]. It formed a cluster of its own because at boot it could not reach its peers: check that %s resolves their names to their management addresses, reaches them on ports 4369 and %d, and has the same Erlang cookie. "+
				"To join it, discarding its own messages and definitions, run on %s: rabbitmqctl stop_app; rabbitmqctl reset; rabbitmqctl join_cluster %s; rabbitmqctl start_app. Then run 'hastack up' again%s",
				n.Name, NodeName(n), strings.Join(missing, ", "), strings.Join(names, ", "), n.Name, e.t.Cluster.Spec.RabbitMQ.DistPort, n.Name, missing[0], logTails(ctx, f))
			return true, ""
		}
		if len(down) > 0 {
			return false, fmt.Sprintf("%s answers; %s not running yet", NodeName(n), strings.Join(down, ", "))
		}
		return true, ""
	})
	if fatal != nil {
		return fatal
	}
	if err != nil {
		return fmt.Errorf("%s: %w%s", n.Name, err, logTails(ctx, f))
	}
	return nil
}

// logTails returns the end of the broker's output and log, to put under an
// error. They hold no secret: RabbitMQ logs a hash of the cookie, never
// the cookie or a password.
func logTails(ctx context.Context, f *facts) string {
	// The broker may have failed with ctx; still fetch the logs.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var b strings.Builder
	for _, p := range []string{"/var/log/hastack/" + ServiceName + ".log", LogDir + "/" + NodeName(f.n) + ".log"} {
		res, err := f.nd.Run(ctx, node.Cmd{Argv: []string{"tail", "-n", "15", p}})
		if out := strings.TrimSpace(string(res.Stdout)); err == nil && out != "" {
			fmt.Fprintf(&b, "\n--- last lines of %s on %s:\n%s", p, f.n.Name, out)
		}
	}
	return b.String()
}

// lastLogLine is the last line of the broker's log, without its
// timestamp, or a note saying there is none.
func lastLogLine(ctx context.Context, f *facts) string {
	res, err := f.nd.Run(ctx, node.Cmd{Argv: []string{"tail", "-n", "1", LogDir + "/" + NodeName(f.n) + ".log"}})
	line := strings.TrimSpace(string(res.Stdout))
	if err != nil || line == "" {
		return "(nothing yet)"
	}
	// "2026-11-24 19:52:35.587287+00:00 [info] <0.223.0> Waiting for ..."
	if f := strings.SplitN(line, " ", 5); len(f) == 5 && strings.HasPrefix(f[2], "[") {
		line = f[2] + " " + f[4]
	}
	if len(line) > 300 {
		line = line[:300] + "..."
	}
	return line
}

// checkStep checks the whole cluster through one node and applies the
// definitions where the running cluster drifted from them. fixes, known
// when planning, go into the step's description.
func checkStep(e *env, f *facts, fixes []string, wave int) plan.Step {
	all := map[string]bool{}
	for _, c := range e.ctls {
		all[c.Name] = true
	}
	action := fmt.Sprintf("check the cluster: %s running, no partition; users, vhost %s, permissions and policies as in %s; no guest user",
		strings.Join(e.nodeNames(all, ""), ", "), e.t.Cluster.Spec.RabbitMQ.VHost, DefinitionsPath)
	if len(fixes) > 0 {
		action += "; fix: " + strings.Join(fixes, "; ")
	}
	return plan.Step{Host: f.n.Name, Wave: wave, Action: action, Do: func(ctx context.Context) error {
		if err := waitMember(ctx, e, f, all, checkTimeout); err != nil {
			return err
		}
		api := e.api(f.n)
		members, err := api.nodes(ctx)
		if err != nil {
			return err
		}
		want := map[string]bool{}
		for _, c := range e.ctls {
			want[NodeName(c)] = true
		}
		partitioned := map[string][]string{}
		for _, m := range members {
			if len(m.Partitions) > 0 {
				partitioned[m.Name] = slices.Clone(m.Partitions)
			}
			if !want[m.Name] {
				return fmt.Errorf("%s: %w", f.n.Name, strayError(m.Name))
			}
		}
		if len(partitioned) > 0 {
			return fmt.Errorf("%s: %w", f.n.Name, partitionError(e, partitioned, len(e.ctls)))
		}
		return provision(ctx, e, api)
	}}
}

// provision makes the running cluster's definitions match the file:
// removes the guest user, imports the definitions when anything else
// differs, and checks again.
func provision(ctx context.Context, e *env, api *mgmt) error {
	fixes, err := drift(ctx, api, e.defs)
	if err != nil || len(fixes) == 0 {
		return err
	}
	guest, other := false, false
	for _, f := range fixes {
		if f == fixGuest {
			guest = true
		} else {
			other = true
		}
	}
	if guest {
		e.say(api.host, "deleting the default guest user")
		if err := api.deleteUser(ctx, "guest"); err != nil {
			return err
		}
	}
	if other {
		fixes = slices.DeleteFunc(fixes, func(f string) bool { return f == fixGuest })
		e.say(api.host, "importing %s through the management API to %s", DefinitionsPath, strings.Join(fixes, "; "))
		if err := api.importDefinitions(ctx, e.defs); err != nil {
			return err
		}
	}
	left, err := drift(ctx, api, e.defs)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("%s: after applying %s the cluster still differs: %s", api.host, DefinitionsPath, strings.Join(left, "; "))
	}
	return nil
}

const fixGuest = "delete the default guest user"

// drift compares the running cluster's users, vhosts, permissions and
// policies with the definitions file and lists what differs, in words that
// name no secret. Users the file does not name are left alone, but for
// guest, whose well-known password must never work.
func drift(ctx context.Context, api *mgmt, defsJSON []byte) ([]string, error) {
	var d definitions
	if err := json.Unmarshal(defsJSON, &d); err != nil {
		return nil, fmt.Errorf("reading the rendered definitions: %w", err)
	}
	var out []string
	add := func(format string, a ...any) { out = append(out, fmt.Sprintf(format, a...)) }
	for _, v := range d.VHosts {
		ok, err := api.vhostExists(ctx, v.Name)
		if err != nil {
			return nil, err
		}
		if !ok {
			add("create vhost %s", v.Name)
		}
	}
	for _, u := range d.Users {
		have, ok, err := api.user(ctx, u.Name)
		switch {
		case err != nil:
			return nil, err
		case !ok:
			add("create user %s", u.Name)
		case have.PasswordHash != u.PasswordHash || have.Algorithm != u.Algorithm:
			add("set the password of user %s from the secrets file", u.Name)
		case !sameSet(have.tagList(), u.Tags):
			add("set the tags of user %s to [%s] (has [%s])", u.Name, strings.Join(u.Tags, ","), strings.Join(have.tagList(), ","))
		}
	}
	for _, p := range d.Permissions {
		have, ok, err := api.permissions(ctx, p.VHost, p.User)
		switch {
		case err != nil:
			return nil, err
		case !ok:
			add("grant user %s its permissions on vhost %s", p.User, p.VHost)
		case have.Configure != p.Configure || have.Write != p.Write || have.Read != p.Read:
			add("set the permissions of user %s on vhost %s to %q %q %q", p.User, p.VHost, p.Configure, p.Write, p.Read)
		}
	}
	for _, p := range d.Policies {
		have, ok, err := api.policy(ctx, p.VHost, p.Name)
		switch {
		case err != nil:
			return nil, err
		case !ok:
			add("create policy %s on vhost %s", p.Name, p.VHost)
		case have.Pattern != p.Pattern || have.ApplyTo != p.ApplyTo || have.Priority != p.Priority || !reflect.DeepEqual(have.Definition, p.Definition):
			add("reset policy %s on vhost %s", p.Name, p.VHost)
		}
	}
	if _, ok, err := api.user(ctx, "guest"); err != nil {
		return nil, err
	} else if ok {
		add(fixGuest)
	}
	return out, nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
