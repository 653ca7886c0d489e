package rabbitmq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
)

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
	var stale []engine.File
	for _, s := range f.stale {
		if !slices.ContainsFunc(f.peers, func(p engine.File) bool { return p.Path == s.Path }) {
			stale = append(stale, s)
		}
	}
	if len(stale) > 0 {
		what = append(what, "write "+plan.Paths(stale))
	}
	if len(f.peers) > 0 {
		what = append(what, "write "+plan.Paths(f.peers)+": only the list of controllers changed, which a running broker does not read, so no restart")
	}
	nd, peers := f.nd, f.peers
	return &plan.Step{Host: f.n.Name, Wave: 0, Action: strings.Join(what, "; "), Do: func(ctx context.Context) error {
		// Folders first: writing the cookie would otherwise create
		// /var/lib/rabbitmq owned by root.
		for _, d := range dirs {
			if err := plan.EnsureDir(ctx, nd, d.path, d.owner, d.mode); err != nil {
				return err
			}
		}
		if err := plan.WriteFiles(ctx, nd, stale); err != nil {
			return err
		}
		return plan.WriteKeepingTime(ctx, nd, peers)
	}}
}

func waitStep(e *env, f *facts, wave int) plan.Step {
	return plan.Step{Host: f.n.Name, Wave: wave,
		Action: fmt.Sprintf("wait until %s answers on its management API (it runs but did not answer yet); should it stay booting for %s while a majority of the controllers run, restart its service", NodeName(f.n), stuckBoot),
		Do: func(ctx context.Context) error {
			err := waitMember(ctx, e, f, map[string]bool{f.n.Name: true}, stuckBoot)
			if !errors.Is(err, plan.ErrNotDone) {
				return err
			}
			return mendStuck(ctx, e, f, stuckBoot, bootTimeout-stuckBoot)
		}}
}

// stuckBoot is how long a broker may stay in boot state "booting", watched
// by 'up', while a majority of the other controllers run, before 'up'
// restarts its service. With its peers running, a broker boots in seconds
// (a node resumed by pause_minority in 2-5 s on the lab). RabbitMQ 3.10.8
// on OTP 25 (Debian 12) can hang there for good: after a partition,
// pause_minority resumes the node, and its boot waits in Erlang's global
// after RabbitMQ's "global hang workaround" faked a nodedown that OTP 25.1
// and later ignore (rabbitmq-server#6034, fixed after 3.10.8). Nothing
// then finishes that boot, and 'rabbitmqctl stop_app' hangs with it: only
// a new process boots.
const stuckBoot = 30 * time.Second

// mendStuck follows a broker that has not answered after waited. When it
// is still booting and a majority of the controllers run without it, it
// restarts its service (the supervisor kills a process that does not
// stop) and waits until the broker runs with them: a booting broker serves
// no client and holds nothing the majority lacks, so the restart loses
// nothing. Otherwise (its peers are down too, or it is not booting) it
// goes on waiting for up to rest.
func mendStuck(ctx context.Context, e *env, f *facts, waited, rest time.Duration) error {
	self := map[string]bool{f.n.Name: true}
	state := bootState(ctx, f.nd)
	peers := e.peersRunning(ctx, f)
	if state != "booting" || 2*len(peers) <= len(e.ctls) {
		return waitMember(ctx, e, f, self, rest)
	}
	start := time.Now()
	names := e.nodeNames(peers, "")
	e.say(f.n.Name, "%s is still booting after %s while %s run: its boot hangs (RabbitMQ 3.10's boot can hang for good in Erlang's global after a partition, rabbitmq-server#6034); restarting its service. Its log: %s",
		NodeName(f.n), waited.Round(time.Second), strings.Join(names, ", "), lastLogLine(ctx, f))
	if err := f.nd.Services().Stop(ctx, ServiceName, stopTimeout); err != nil {
		return fmt.Errorf("%s: stopping %s, whose boot hangs: %w", f.n.Name, Server, err)
	}
	if err := plan.EnsureService(ctx, f.nd, Service(), false); err != nil {
		return fmt.Errorf("%s: starting %s again after its boot hung: %w%s", f.n.Name, Server, err, logTails(ctx, f))
	}
	peers[f.n.Name] = true
	if err := waitMember(ctx, e, f, peers, bootTimeout); err != nil {
		return err
	}
	e.say(f.n.Name, "%s restarted and back in the cluster with %s (%s)", NodeName(f.n), strings.Join(names, ", "), time.Since(start).Round(time.Millisecond))
	return nil
}

// stopTimeout bounds the stop of a broker whose boot hangs: it does not
// stop by itself (its application waits on the hung boot), so the
// supervisor's SIGKILL ends it.
const stopTimeout = 20 * time.Second

// peersRunning is the controllers other than f whose management API
// answers and reports them running.
func (e *env) peersRunning(ctx context.Context, f *facts) map[string]bool {
	out := map[string]bool{}
	for _, c := range e.ctls {
		if c.Name == f.n.Name {
			continue
		}
		members, err := e.api(c).nodes(ctx)
		if err != nil {
			continue
		}
		for _, m := range members {
			if m.Name == NodeName(c) && m.Running {
				out[c.Name] = true
			}
		}
	}
	return out
}

// resumeStep starts the RabbitMQ application of a paused broker (its
// Erlang node runs, its application is stopped), once that node reaches a
// majority of the controllers: the condition pause_minority itself waits
// for before it resumes a node, checked from the node, over Erlang
// distribution. Cut off from the majority, the node is left paused (it
// would only wait at boot for its peers' tables): the step fails and says
// so.
func resumeStep(e *env, f *facts, wave int) plan.Step {
	action := fmt.Sprintf("start the RabbitMQ application on %s (rabbitmqctl start_app): its node runs with the application stopped (paused by pause_minority during a partition and not resumed since, or stopped by hand), so it serves no client; first check from it that it reaches a majority of the controllers", NodeName(f.n))
	return plan.Step{Host: f.n.Name, Wave: wave, Action: action, Do: func(ctx context.Context) error {
		start := time.Now()
		var peers []string
		for _, c := range e.ctls {
			peers = append(peers, "'"+NodeName(c)+"'")
		}
		ping := fmt.Sprintf("length([N || N <- [%s], net_adm:ping(N) =:= pong]).", strings.Join(peers, ", "))
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		res, err := f.nd.Run(cctx, node.Cmd{Argv: []string{"rabbitmqctl", "eval", ping}})
		cancel()
		if err != nil {
			return fmt.Errorf("%s: asking %s which controllers it reaches: %w", f.n.Name, NodeName(f.n), err)
		}
		reached, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
		if err != nil {
			return fmt.Errorf("%s: asking %s which controllers it reaches: unexpected answer %q", f.n.Name, NodeName(f.n), strings.TrimSpace(string(res.Stdout)))
		}
		if 2*reached <= len(e.ctls) {
			return fmt.Errorf("%s: %s is paused and reaches only %d of the %d controllers (itself included) over Erlang distribution: it would wait at boot for its peers. Check the network between the controllers (name resolution, ports 4369 and %d), then run 'hastack up' again (a node paused by pause_minority also resumes by itself once it reaches a majority)",
				f.n.Name, NodeName(f.n), reached, len(e.ctls), e.t.Cluster.Spec.RabbitMQ.DistPort)
		}
		// start_app returns once the boot is over; one that hangs is
		// mended as any other (mendStuck).
		cctx, cancel = context.WithTimeout(ctx, stuckBoot)
		_, err = f.nd.Run(cctx, node.Cmd{Argv: []string{"rabbitmqctl", "start_app"}})
		hung := errors.Is(cctx.Err(), context.DeadlineExceeded)
		cancel()
		switch {
		case hung:
			if err := mendStuck(ctx, e, f, stuckBoot, bootTimeout); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("%s: rabbitmqctl start_app: %w%s", f.n.Name, err, logTails(ctx, f))
		default:
			if err := waitMember(ctx, e, f, map[string]bool{f.n.Name: true}, bootTimeout); err != nil {
				return err
			}
		}
		e.say(f.n.Name, "%s resumed: its application runs again (%s)", NodeName(f.n), time.Since(start).Round(time.Millisecond))
		return nil
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
	startAlone                        // a former member that boots first, alone (it stopped last, or was forced)
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
	case startAlone:
		then = "alone, first: it loads its database without waiting for its peers; wait until its management API answers"
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

// healStep restarts the RabbitMQ application of a node on the minority
// side of a partition, as autoheal would: it rejoins the majority and
// discards what only it received since the split (with quorum queues,
// nothing confirmed: those live on the majority). It waits until every
// controller runs in one cluster with no partition left.
func healStep(e *env, f *facts, wave int) plan.Step {
	action := fmt.Sprintf("restart the RabbitMQ application on %s (rabbitmqctl stop_app; start_app): it is cut off from the majority in a partition that did not heal; it rejoins, discarding what only it received since the split (quorum queues: nothing confirmed)", NodeName(f.n))
	return plan.Step{Host: f.n.Name, Wave: wave, Action: action, Do: func(ctx context.Context) error {
		start := time.Now()
		// A view taken right after a broker restarted can still list a
		// partition for about 15 s: if it clears by itself meanwhile,
		// there is nothing to restart.
		if cleared(ctx, e, 15*time.Second) {
			e.say(f.n.Name, "the partition cleared by itself; nothing restarted")
			return nil
		}
		restart := func(g *facts) error {
			for _, argv := range [][]string{{"rabbitmqctl", "stop_app"}, {"rabbitmqctl", "start_app"}} {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				_, err := g.nd.Run(cctx, node.Cmd{Argv: argv})
				cancel()
				if err != nil {
					return fmt.Errorf("%s: %s: %w%s", g.n.Name, strings.Join(argv, " "), err, logTails(ctx, g))
				}
			}
			return nil
		}
		// whole waits until f's view shows every controller running with
		// no partition, and returns the members still partitioned.
		api := e.api(f.n)
		whole := func(d time.Duration) (bool, []string) {
			var still []string
			err := plan.WaitFor(ctx, NodeName(f.n)+" back in one cluster with no partition", d, func(ctx context.Context) (bool, string) {
				members, err := api.nodes(ctx)
				if err != nil {
					return false, err.Error()
				}
				var bad []string
				still = nil
				for _, c := range e.ctls {
					found := false
					for _, m := range members {
						if m.Name == NodeName(c) {
							found = true
							if !m.Running || len(m.Partitions) > 0 {
								bad = append(bad, m.Name)
							}
							if len(m.Partitions) > 0 {
								still = append(still, m.Name)
								still = append(still, m.Partitions...)
							}
						}
					}
					if !found {
						bad = append(bad, NodeName(c)+" (not a member)")
					}
				}
				if len(bad) > 0 {
					return false, "not yet running without a partition: " + strings.Join(bad, ", ")
				}
				return true, ""
			})
			return err == nil, still
		}
		if err := restart(f); err != nil {
			return err
		}
		ok, still := whole(90 * time.Second)
		if !ok {
			// The views did not say which side hung clearly enough: the
			// node restarted was not the one cut off. Restart, one at a
			// time, the others still named in a partition (quorum
			// queues keep a majority through each restart).
			for _, c := range e.ctls {
				if NodeName(c) == NodeName(f.n) || !slices.Contains(still, NodeName(c)) {
					continue
				}
				g := &facts{n: c, nd: e.t.Node(c.Name)}
				e.say(f.n.Name, "still partitioned after the restart; restarting the RabbitMQ application on %s too", NodeName(c))
				if err := restart(g); err != nil {
					return err
				}
			}
			if ok, _ = whole(3 * time.Minute); !ok {
				return fmt.Errorf("%s: the partition did not heal after restarting the applications of %s%s", f.n.Name, strings.Join(append([]string{NodeName(f.n)}, still...), ", "), logTails(ctx, f))
			}
		}
		e.say(f.n.Name, "partition healed: %s rejoined, every controller runs in one cluster (%s)", NodeName(f.n), time.Since(start).Round(time.Millisecond))
		return nil
	}}
}

// cleared waits up to d for every answering controller to report every
// member running with no partition.
func cleared(ctx context.Context, e *env, d time.Duration) bool {
	err := plan.WaitFor(ctx, "the partition to clear", d, func(ctx context.Context) (bool, string) {
		answered := 0
		for _, c := range e.ctls {
			members, err := e.api(c).nodes(ctx)
			if err != nil {
				continue
			}
			answered++
			for _, m := range members {
				if !m.Running || len(m.Partitions) > 0 {
					return false, m.Name + " not whole"
				}
			}
		}
		return answered == len(e.ctls), ""
	})
	return err == nil
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

// lastLogLine is the last line of the broker's log that says something
// (a multi-line message ends in lines holding only a timestamp and a
// process), without its timestamp, or a note saying there is none.
func lastLogLine(ctx context.Context, f *facts) string {
	res, err := f.nd.Run(ctx, node.Cmd{Argv: []string{"tail", "-n", "20", LogDir + "/" + NodeName(f.n) + ".log"}})
	if err != nil {
		return "(nothing yet)"
	}
	return lastSaying(string(res.Stdout))
}

// lastSaying picks from a log's tail its last line with a message, as
// lastLogLine describes.
func lastSaying(tail string) string {
	lines := strings.Split(strings.TrimSpace(tail), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		line := strings.TrimSpace(lines[i])
		// "2026-11-24 19:52:35.587287+00:00 [info] <0.223.0> Waiting for ..."
		if f := strings.SplitN(line, " ", 5); len(f) >= 4 && strings.HasPrefix(f[2], "[") {
			if len(f) < 5 || strings.TrimSpace(f[4]) == "" {
				continue
			}
			line = f[2] + " " + f[4]
		}
		if line == "" {
			continue
		}
		if len(line) > 300 {
			line = line[:300] + "..."
		}
		return line
	}
	return "(nothing yet)"
}

// checkStep checks the whole cluster through one node and applies the
// definitions where the running cluster drifted from them. fixes, known
// when planning, go into the step's description.
//
// expect is the controllers that must run in the cluster: every one for
// 'up'; for 'recover rabbitmq', the ones that answer.
func checkStep(e *env, f *facts, fixes []string, wave int, expect map[string]bool) plan.Step {
	all := expect
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

// statsStep restarts the management agent of a broker whose statistics
// process died. RabbitMQ 3.10 crashes it when a peer reconnects while its
// old distribution connection is still open (rabbit_net:dist_info, "no case
// clause matching [#Port<..>,#Port<..>]"; seen after a node was cut off or
// frozen and came back), and the agent's supervisor gives up after a few
// tries. The broker keeps working, but its partitions, alarms and memory
// can no longer be seen, so status cannot vouch for it. Restarting the
// agent application brings them back without touching queues or clients.
func statsStep(e *env, f *facts, wave int) plan.Step {
	action := fmt.Sprintf("restart the management agent on %s: its statistics process died (a RabbitMQ 3.10 crash after a peer reconnected), so its partitions and alarms cannot be seen; the broker and its clients are not touched", NodeName(f.n))
	return plan.Step{Host: f.n.Name, Wave: wave, Action: action, Do: func(ctx context.Context) error {
		const restart = "application:stop(rabbitmq_management_agent), application:start(rabbitmq_management_agent)."
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err := f.nd.Run(cctx, node.Cmd{Argv: []string{"rabbitmqctl", "eval", restart}})
		cancel()
		if err != nil {
			return fmt.Errorf("%s: restarting the management agent: %w", f.n.Name, err)
		}
		api := e.api(f.n)
		return plan.WaitFor(ctx, NodeName(f.n)+"'s statistics back", time.Minute, func(ctx context.Context) (bool, string) {
			members, err := api.nodes(ctx)
			if err != nil {
				return false, err.Error()
			}
			g := *f
			g.members = members
			if !g.ownStats() {
				return false, "no statistics of " + NodeName(f.n) + " yet"
			}
			return true, ""
		})
	}}
}

// reviveStep takes a broker out of maintenance mode: its client listeners
// were suspended and its queue leaders moved away by 'rabbitmq-upgrade
// drain' (the first step of 'hastack restart'), and nothing put it back.
func reviveStep(f *facts, wave int) plan.Step {
	action := fmt.Sprintf("take %s out of maintenance mode (rabbitmq-upgrade revive): it runs with its client port closed, as an interrupted 'hastack restart' leaves it, and serves no client", NodeName(f.n))
	return plan.Step{Host: f.n.Name, Wave: wave, Action: action, Do: func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := f.nd.Run(cctx, node.Cmd{Argv: []string{"rabbitmq-upgrade", "revive"}})
		cancel()
		if err != nil {
			return fmt.Errorf("%s: rabbitmq-upgrade revive: %w", f.n.Name, err)
		}
		return nil
	}}
}
