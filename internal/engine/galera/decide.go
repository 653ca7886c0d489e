package galera

import (
	"fmt"
	"sort"
	"strings"
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
)

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
}

// Refusal is a state hastack will not act on by itself. It says what is
// wrong and what the operator can do; nothing has been changed.
type Refusal struct {
	Problem string
	Remedy  string
}

func (r *Refusal) Error() string { return r.Problem + ": " + r.Remedy }

// Decide chooses from the views of every controller, in spec order.
func Decide(views []View) (Decision, error) {
	for _, v := range views {
		if !v.Reachable {
			return Decision{}, &Refusal{
				Problem: fmt.Sprintf("%s cannot be reached, so its place in the cluster's history is unknown", v.Name),
				Remedy:  fmt.Sprintf("bring %s back (or remove it from the spec) and run 'hastack up' again; hastack does not start or bootstrap Galera without knowing every controller's position", v.Name),
			}
		}
	}
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
	d := Decision{}
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
		var states []string
		for _, v := range running {
			states = append(states, v.Name+"="+v.Status)
		}
		return Decision{}, &Refusal{
			Problem: fmt.Sprintf("Galera runs on %d node(s) but none is in a Primary component (%s): the cluster lost quorum", len(running), strings.Join(states, ", ")),
			Remedy:  "hastack does not re-bootstrap a running cluster blindly. Find the most advanced node (highest wsrep_last_committed) and run there: SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'",
		}
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
		// only when no other node is known to be further ahead: a marker
		// left on a stale node (edited by hand, or copied with a
		// datadir) must not decide which writes survive.
		if len(safe) == 1 && !behind(safe[0], withData) {
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

// behind reports whether another node's known position is ahead of v's.
func behind(v View, all []View) bool {
	for _, o := range all {
		if o.Name != v.Name && o.Gra.Seqno > v.Gra.Seqno {
			return true
		}
	}
	return false
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
