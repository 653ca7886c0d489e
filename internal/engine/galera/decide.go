package galera

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hastack/hastack/internal/plan"
)

// This file is the decision at the heart of the Galera phase: which node
// starts the cluster, which join, which must be restarted, and when to
// refuse. It is a pure function of the facts gathered from the
// controllers, so that every case (a fresh cluster, a clean full stop, a
// power cut, a stale node, a wiped or foreign one, an unreachable one) is
// table-tested without an engine.

// View is what the decision needs to know of one controller.
type View struct {
	Name string
	// Reachable is false when the node could not be asked at all.
	Reachable bool
	Running   bool
	// Answers: the running server answered its status query; Status
	// holds wsrep_cluster_status/wsrep_local_state_comment for messages.
	Answers bool
	// StatusErr is why a running node did not answer.
	StatusErr string
	Primary   bool
	Status    string
	// StateUUID is wsrep_cluster_state_uuid of a running, answering node.
	StateUUID string
	// Gra is its grastate.dat, when it has one (HasGra).
	HasGra bool
	Gra    GraState
	// Stale: its configuration files differ from the rendered ones.
	Stale bool
}

// hasData: a stopped node that holds a place in a cluster's history.
func (v View) hasData() bool { return !v.Running && v.HasGra && !v.Gra.Fresh() }

// Mode is how the cluster is brought up.
type Mode int

const (
	// ModeRunning: a Primary component runs; stopped nodes join it and
	// nodes with a changed configuration restart one at a time.
	ModeRunning Mode = iota
	// ModeNew: no controller has Galera data; the first bootstraps.
	ModeNew
	// ModeSafe: the cluster stopped cleanly; the node Galera marked
	// safe_to_bootstrap (the last to leave) bootstraps.
	ModeSafe
	// ModeRecover: no node stopped cleanly (a power cut); every node's
	// last committed position is recovered, and the most advanced one
	// bootstraps.
	ModeRecover
	// ModePromote: survivors run without a Primary component (the others
	// are gone); the most advanced survivor is promoted (pc.bootstrap).
	// Only on explicit recovery, once the others are known to be down.
	ModePromote
)

// Options are what the operator said, for 'hastack recover galera'. The
// zero value is what 'up' does: nothing beyond the safe cases.
type Options struct {
	// Recover allows promoting survivors that lost their Primary
	// component, once every other controller is down.
	Recover bool
	// BootstrapNode is the operator's choice of the node to bootstrap
	// from, instead of the most advanced one; needs Yes when positions
	// are unknown or the node is behind.
	BootstrapNode string
	// Yes confirms that unreachable controllers are down or cut off for
	// good, and accepts what a named node lacks.
	Yes bool
}

// Decision is what the phase will do, in order.
type Decision struct {
	Mode Mode
	// Boot is the node that bootstraps (ModeNew, ModeSafe).
	Boot string
	// Recover lists the nodes whose positions are recovered to choose
	// the bootstrap node (ModeRecover); every one must be reachable.
	Recover []string
	// Join lists the nodes started to join, in order (in ModeRecover,
	// every node: the chosen one is skipped when its turn comes).
	Join []string
	// Restart lists running nodes whose configuration changed, restarted
	// one at a time after the joins (ModeRunning only).
	Restart []string
	// UUID is the cluster's state UUID, when known.
	UUID string
	// Promote lists the running survivors the most advanced of which is
	// promoted (ModePromote).
	Promote []string
	// Unknown lists the controllers that could not be reached: the
	// operator confirmed they are gone (Options.Yes).
	Unknown []string
	// Named is the node the operator chose (Options.BootstrapNode).
	Named string
}

// Refusal is a state hastack will not act on by itself (plan.Refusal).
type Refusal = plan.Refusal

// Decide chooses from the views of every controller, in spec order.
func Decide(views []View, o Options) (Decision, error) {
	d := Decision{Named: o.BootstrapNode}
	if o.BootstrapNode != "" {
		found := false
		for _, v := range views {
			if v.Name == o.BootstrapNode {
				found = true
				if v.Reachable && !v.Running && !v.hasData() {
					return Decision{}, &Refusal{
						Problem: fmt.Sprintf("--bootstrap-node %s: the node holds no Galera data (never joined, or wiped)", v.Name),
						Remedy:  "name a controller that holds the cluster's data",
					}
				}
			}
		}
		if !found {
			return Decision{}, &Refusal{Problem: fmt.Sprintf("--bootstrap-node %s is not a controller of the spec", o.BootstrapNode), Remedy: "name one of " + strings.Join(names(views), ", ")}
		}
	}
	var reachable []View
	for _, v := range views {
		if v.Reachable {
			reachable = append(reachable, v)
			continue
		}
		d.Unknown = append(d.Unknown, v.Name)
	}
	if len(d.Unknown) > 0 && !(o.Recover && o.Yes) {
		return Decision{}, &Refusal{
			Problem: fmt.Sprintf("%s cannot be reached, so its place in the cluster's history is unknown", strings.Join(d.Unknown, ", ")),
			Remedy:  fmt.Sprintf("bring it back and run 'hastack up' again; hastack does not start or bootstrap Galera without knowing every controller's position. If it is gone for good (powered off, cut off), 'hastack recover galera --yes' goes on without it, saying what it cannot know"),
		}
	}
	if len(reachable) == 0 {
		return Decision{}, &Refusal{Problem: "no controller can be reached", Remedy: "bring at least one back"}
	}
	views = reachable
	var running, primary, withData []View
	for _, v := range views {
		if v.Running {
			running = append(running, v)
			if v.Answers && v.Primary {
				primary = append(primary, v)
			}
		}
		if v.hasData() {
			withData = append(withData, v)
		}
	}
	// A cluster's identity: the state UUID of the running Primary
	// component, or the one every node with data agrees on.
	if len(primary) > 0 {
		d.UUID = primary[0].StateUUID
	}
	if d.UUID == "" {
		uuids := map[string][]string{}
		for _, v := range withData {
			uuids[v.Gra.UUID] = append(uuids[v.Gra.UUID], v.Name)
		}
		if len(uuids) > 1 {
			return Decision{}, &Refusal{
				Problem: fmt.Sprintf("the controllers hold data of different Galera clusters (%s)", describeUUIDs(uuids)),
				Remedy:  fmt.Sprintf("hastack will not merge or overwrite them; move the datadir (%s) of the nodes that do not belong aside and run 'hastack up' again", DataDir),
			}
		}
		for u := range uuids {
			d.UUID = u
		}
	}
	for _, v := range withData {
		if v.Gra.UUID != d.UUID {
			return Decision{}, &Refusal{
				Problem: fmt.Sprintf("%s holds data of another Galera cluster (state %s, the cluster is %s)", v.Name, v.Gra.UUID, d.UUID),
				Remedy:  fmt.Sprintf("joining would throw it away; move %s aside on %s if that is intended, then run 'hastack up' again", DataDir, v.Name),
			}
		}
	}
	// Nodes that run but do not answer, or answer non-Primary, are a
	// problem for an operator: hastack does not guess.
	for _, v := range running {
		if !v.Answers {
			return Decision{}, &Refusal{
				Problem: fmt.Sprintf("%s: mariadb runs but does not answer on %s (%s)", v.Name, Socket, v.StatusErr),
				Remedy:  fmt.Sprintf("look at its log on %s (the service's journal, or /var/log/hastack/%s.log on a lab node), stop it or let it finish starting, then run 'hastack up' again", v.Name, ServiceName),
			}
		}
	}
	if len(running) > 0 && len(primary) == 0 {
		var states, up []string
		for _, v := range running {
			states = append(states, v.Name+"="+v.Status)
			up = append(up, v.Name)
		}
		problem := fmt.Sprintf("Galera runs on %d node(s) but none is in a Primary component (%s): the cluster lost quorum", len(running), strings.Join(states, ", "))
		if !o.Recover {
			return Decision{}, &Refusal{
				Problem: problem,
				Remedy:  "hastack does not re-bootstrap a running cluster blindly: if the other controllers are down for good, 'hastack recover galera' promotes the most advanced survivor once it has confirmed that",
			}
		}
		// Promoting is safe only when no other component can form: every
		// other controller is known to be stopped (reachable, mariadb not
		// running) or confirmed gone by the operator (Yes, above).
		d.Mode, d.Promote = ModePromote, up
		for _, v := range views {
			if !v.Running {
				d.Join = append(d.Join, v.Name)
			}
		}
		return d, nil
	}

	switch {
	case len(primary) > 0:
		d.Mode = ModeRunning
		for _, v := range views {
			if !v.Running {
				d.Join = append(d.Join, v.Name)
			}
		}
		for _, v := range views {
			if v.Running && v.Stale {
				d.Restart = append(d.Restart, v.Name)
			}
		}
	case len(withData) == 0 && len(d.Unknown) > 0:
		return Decision{}, &Refusal{
			Problem: fmt.Sprintf("no reachable controller holds Galera data, and %s cannot be reached", strings.Join(d.Unknown, ", ")),
			Remedy:  "a new cluster would throw away what the unreachable ones hold; bring them back",
		}
	case len(withData) == 0:
		d.Mode, d.Boot = ModeNew, views[0].Name
		d.Join = others(views, d.Boot)
	default:
		var safe []View
		for _, v := range withData {
			if v.Gra.SafeToBootstrap {
				safe = append(safe, v)
			}
		}
		// Galera marks the last node to leave safe to bootstrap. Trusted
		// only when every other node's position is known (a clean stop)
		// and none is further ahead: a node that crashed (seqno -1) may
		// hold more than a stale marked node (one that stopped cleanly
		// long before, or whose marker was edited or copied with a
		// datadir), and only recovering its position tells.
		if len(safe) == 1 && !untrusted(safe[0], withData) && len(d.Unknown) == 0 && (o.BootstrapNode == "" || o.BootstrapNode == safe[0].Name) {
			d.Mode, d.Boot = ModeSafe, safe[0].Name
			d.Join = others(views, d.Boot)
			break
		}
		// Every node stopped without a clean shutdown (a power cut, every
		// node killed), or the marker cannot be trusted: recover every
		// position and bootstrap the most advanced.
		d.Mode = ModeRecover
		for _, v := range withData {
			d.Recover = append(d.Recover, v.Name)
		}
		for _, v := range views {
			d.Join = append(d.Join, v.Name)
		}
	}
	return d, nil
}

// untrusted reports whether another node's position is unknown (it
// crashed) or ahead of v's.
func untrusted(v View, all []View) bool {
	for _, o := range all {
		if o.Name != v.Name && (o.Gra.Seqno < 0 || o.Gra.Seqno > v.Gra.Seqno) {
			return true
		}
	}
	return false
}

func names(views []View) []string {
	var out []string
	for _, v := range views {
		out = append(out, v.Name)
	}
	return out
}

func others(views []View, not string) []string {
	var out []string
	for _, v := range views {
		if v.Name != not {
			out = append(out, v.Name)
		}
	}
	return out
}

// Describe says what the decision is, for the plan.
func (d Decision) Describe(views []View) string {
	switch d.Mode {
	case ModeNew:
		return "bootstrap a new Galera cluster (no controller has Galera data)"
	case ModeSafe:
		for _, v := range views {
			if v.Name == d.Boot {
				return fmt.Sprintf("bootstrap the cluster again from this node (it stopped last: safe_to_bootstrap, seqno %d)", v.Gra.Seqno)
			}
		}
	case ModePromote:
		return fmt.Sprintf("promote the most advanced of %s to a Primary component (pc.bootstrap): every other controller is down", strings.Join(d.Promote, ", "))
	case ModeRecover:
		var parts []string
		for _, name := range d.Recover {
			for _, v := range views {
				if v.Name == name {
					parts = append(parts, fmt.Sprintf("%s seqno %d", v.Name, v.Gra.Seqno))
				}
			}
		}
		return fmt.Sprintf("recover the last committed position on %s (none stopped cleanly: %s), then bootstrap from the most advanced", strings.Join(d.Recover, ", "), strings.Join(parts, ", "))
	}
	return "join the running cluster"
}

func describeUUIDs(m map[string][]string) string {
	var parts []string
	for u, names := range m {
		sort.Strings(names)
		parts = append(parts, u+": "+strings.Join(names, ","))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}
