package rabbitmq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
)

// The rabbitmq phase in four parts: facts (this file: what each controller
// is), refuse.go (what hastack will not repair by itself), schedule.go
// (which steps, in which waves: a pure function of the facts) and steps.go
// (what each step does). up.go ties them together.
// facts is what planning learns of one controller.
type facts struct {
	n     spec.Node
	nd    node.Node
	files []engine.File
	stale []engine.File
	// changed lists the stale files whose content (not just mode or
	// owner) differs: only those call for a restart.
	changed []engine.File
	// peers lists the stale files of a running broker that differ only in
	// the cluster's membership (cluster_formation.classic_config.nodes):
	// peer discovery reads it only when a node first joins, so they are
	// written without a restart (and keep their time: see
	// plan.WriteKeepingTime).
	peers []engine.File
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
	// statsDead: the broker runs but its management statistics process
	// does not (statsStep).
	statsDead bool
	// drained: the broker runs in maintenance mode (client listeners
	// suspended, 'rabbitmq-upgrade drain'), as an interrupted 'hastack
	// restart' leaves it: it serves no client (reviveStep).
	drained bool
	// paused: the broker's Erlang node runs but its RabbitMQ application
	// is stopped, and not because it boots: pause_minority stopped it
	// during a partition and it did not start again when the partition
	// healed (seen after a cut: Erlang's global faked a nodedown and the
	// node's wait for the majority never ended), or someone ran
	// 'rabbitmqctl stop_app'. It serves no client until started
	// (resumeStep).
	paused bool
	// unreachable is why the host could not be asked at all ('recover
	// rabbitmq' only; 'up' fails on such a host); no other fact is known.
	unreachable error
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

// membershipSetting is the setting of rabbitmq.conf that lists the
// controllers (it changes when one is added or removed).
const membershipSetting = "cluster_formation.classic_config.nodes."

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
		if err == nil && !bytes.Equal(have, s.Content) && plan.SameBut(have, s.Content, membershipSetting) {
			f.peers = append(f.peers, s)
			continue
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
	st, err := f.nd.Services().Status(ctx, ServiceName)
	if err != nil {
		return err
	}
	f.running = st.Running
	if !f.running && len(f.peers) > 0 {
		// A stopped broker reads them when it starts: a change like any.
		f.changed = append(f.changed, f.peers...)
		f.peers = nil
	}
	if f.running && len(f.changed) == 0 {
		// Files written by an earlier 'up' that failed before this
		// broker's restart: unchanged on disk, but never read by the
		// running broker. They call for the restart all the same.
		// definitions.json is applied through the API (needsRestart),
		// and a cookie is compared by content (cookieChanged).
		var paths []string
		for _, file := range f.files {
			if file.Path != DefinitionsPath && file.Path != CookiePath {
				paths = append(paths, file.Path)
			}
		}
		newer, err := plan.NotReadSince(ctx, f.nd, st, paths...)
		if err != nil {
			return err
		}
		if newer {
			for _, file := range f.files {
				if slices.Contains(paths, file.Path) {
					f.changed = append(f.changed, file)
				}
			}
		}
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
	if f.apiErr == nil && f.running && !f.ownStats() {
		// No statistics of this node: just started, or its statistics
		// process is dead (see statsStep). Only the node can tell.
		res, err := f.nd.Run(ctx, node.Cmd{Argv: []string{"rabbitmqctl", "eval", "whereis(rabbit_mgmt_external_stats)."}})
		f.statsDead = err == nil && strings.TrimSpace(string(res.Stdout)) == "undefined"
	}
	if f.running && (f.apiErr != nil || !AMQPAccepts(ctx, f.n.Address, e.t.Cluster.Spec.RabbitMQ.Port)) {
		// A port that does not answer: booting, paused, or maintenance
		// mode (which closes the management port too). Only the node can
		// tell.
		f.paused = appStopped(ctx, f.nd, st)
		if !f.paused {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			res, err := f.nd.Run(cctx, node.Cmd{Argv: []string{"rabbitmqctl", "eval", "rabbit_maintenance:is_being_drained_local_read(node())."}})
			cancel()
			f.drained = err == nil && strings.TrimSpace(string(res.Stdout)) == "true"
		}
	}
	return nil
}

// bootGrace is how long after its process started a broker whose
// application is stopped is taken for one still booting: RabbitMQ reports
// its boot state "stopped" until the boot begins.
const bootGrace = 30 * time.Second

// appStopped reports whether the broker's Erlang node answers and says its
// RabbitMQ application is stopped (boot state "stopped", not "booting"),
// well after its process started. Any doubt (no answer, a young process)
// is a no: the broker is then waited for, as one booting.
func appStopped(ctx context.Context, nd node.Node, st node.ServiceState) bool {
	if st.Started.IsZero() || time.Since(st.Started) < bootGrace {
		return false
	}
	return bootState(ctx, nd) == "stopped"
}

// bootState is what the broker's Erlang node says of its RabbitMQ
// application: "stopped", "booting", "core_started", "ready" or
// "stopping"; "" when the node does not answer.
func bootState(ctx context.Context, nd node.Node) string {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := nd.Run(cctx, node.Cmd{Argv: []string{"rabbitmqctl", "eval", "rabbit_boot_state:get()."}})
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(res.Stdout))
}

// AMQPAccepts reports whether a broker's client port accepts a TCP
// connection within 2 seconds.
func AMQPAccepts(ctx context.Context, address string, port int) bool {
	d := net.Dialer{Timeout: 2 * time.Second}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(address, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ownStats reports whether the management API shows this node's own
// statistics (its partitions field is only there once they came in).
func (f *facts) ownStats() bool {
	for _, m := range f.members {
		if m.Name == NodeName(f.n) {
			return m.Partitions != nil
		}
	}
	return true // not a member: other steps deal with that
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
