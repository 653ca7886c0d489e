package rabbitmq

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hastack/hastack/internal/plan"
)

// This file is the decision of 'hastack recover rabbitmq' when no broker
// runs: which node starts first, whether it must be forced to boot without
// its peers, and when to refuse. A pure function of what each controller
// holds, so that every case is table-tested without an engine.
//
// What RabbitMQ 3.10 does at boot after a full stop: a member loads its
// database from disk only when it saw every other member stop (it stopped
// last; its nodes_running_at_shutdown lists only itself) or when
// 'rabbitmqctl force_boot' left a force_load file; otherwise it waits (10
// times 30 s) for one of the members it last saw running, and gives up.
// Members killed at the same moment each saw the others running: started
// together, they wait for each other and come up together.

// RecoverOptions are what the operator said to 'hastack recover rabbitmq'.
type RecoverOptions struct {
	// Yes confirms that the controllers that cannot be reached (or hold
	// no data) are gone for good: a node that waits for them at boot is
	// forced to boot without them (rabbitmqctl force_boot).
	Yes bool
	// BootNode is the operator's choice of the node started first after a
	// full stop, instead of the one that stopped last.
	BootNode string
	// Forget lists members lost for good (spec names or rabbit@names):
	// they are removed from the cluster (forget_cluster_node) and from
	// every quorum queue, which grow onto the running controllers.
	Forget []string
}

// NodeView is what the decision needs to know of one controller.
type NodeView struct {
	Name      string
	Reachable bool
	Running   bool
	HasData   bool
	// RunningAtShutdown: the members it last saw running (nil: unknown).
	RunningAtShutdown []string
	// ForceBoot: a force_load file lets it boot without its peers.
	ForceBoot bool
}

// FullStart is how a fully stopped cluster is started again.
type FullStart struct {
	// First starts alone and boots without waiting (it stopped last, or
	// is forced to); "" when the members start together.
	First string
	// Force: First needs 'rabbitmqctl force_boot' before its start.
	Force bool
	// Then are the other members with data, started together after First
	// (or every member with data when First is "").
	Then []string
	// Join are reachable blank nodes, joined one at a time at the end.
	Join []string
	// Missing are controllers that cannot be reached.
	Missing []string
	// Why says why, for the operator.
	Why string
}

// waitsFor lists the members v waits for at boot that are not in group
// (nil when it boots: it saw the others stop, was forced, or its list is
// unknown, in which case hastack cannot tell and lets it try).
func (v NodeView) waitsFor(group []string) []string {
	if v.ForceBoot || v.RunningAtShutdown == nil {
		return nil
	}
	var out []string
	for _, m := range v.RunningAtShutdown {
		if m != "rabbit@"+v.Name && !slices.Contains(group, m) {
			out = append(out, m)
		}
	}
	return out
}

// bootsAlone: v loads its database without any peer.
func (v NodeView) bootsAlone() bool {
	return v.ForceBoot || (v.RunningAtShutdown != nil && len(v.waitsFor(nil)) == 0)
}

// DecideFullStart chooses how to start a cluster where no broker runs,
// from the views of every controller in spec order.
func DecideFullStart(views []NodeView, o RecoverOptions) (FullStart, error) {
	var d FullStart
	var withData []NodeView
	var group []string // member names of the nodes that can start now
	for _, v := range views {
		switch {
		case !v.Reachable:
			d.Missing = append(d.Missing, v.Name)
		case v.HasData:
			withData = append(withData, v)
			group = append(group, "rabbit@"+v.Name)
		default:
			d.Join = append(d.Join, v.Name)
		}
	}
	if o.BootNode != "" {
		i := slices.IndexFunc(withData, func(v NodeView) bool { return v.Name == o.BootNode })
		if i < 0 {
			return FullStart{}, &plan.Refusal{
				Problem: fmt.Sprintf("--boot-node %s is not a controller that can be reached and holds the cluster's data", o.BootNode),
				Remedy:  "name one of " + strings.Join(names(withData), ", "),
			}
		}
	}
	if len(withData) == 0 {
		if len(d.Missing) > 0 {
			return FullStart{}, &plan.Refusal{
				Problem: fmt.Sprintf("no reachable controller holds RabbitMQ data, and %s cannot be reached", strings.Join(d.Missing, ", ")),
				Remedy:  "a new cluster would leave out what the unreachable ones hold; bring them back, or run 'hastack up' to make a new cluster once they are gone for good",
			}
		}
		return FullStart{}, &plan.Refusal{Problem: "no controller holds RabbitMQ data: there is no cluster to recover", Remedy: "run 'hastack up' to make a new one"}
	}
	others := func(not string) []string {
		var out []string
		for _, v := range withData {
			if v.Name != not {
				out = append(out, v.Name)
			}
		}
		return out
	}
	if o.BootNode != "" {
		v := withData[slices.IndexFunc(withData, func(v NodeView) bool { return v.Name == o.BootNode })]
		d.First, d.Then = v.Name, others(v.Name)
		if v.bootsAlone() {
			d.Why = fmt.Sprintf("named by the operator; it boots without waiting (%s)", aloneWhy(v))
			return d, nil
		}
		waits := v.waitsFor(nil)
		if !o.Yes {
			return FullStart{}, &plan.Refusal{
				Problem: fmt.Sprintf("--boot-node %s: it last saw %s running, so it waits for them at boot; it would be forced to boot without them (rabbitmqctl force_boot), and what changed in the cluster after %s stopped is lost", v.Name, strings.Join(waits, ", "), v.Name),
				Remedy:  "run again with --yes to accept that, or without --boot-node to let hastack choose",
			}
		}
		d.Force = true
		d.Why = fmt.Sprintf("named by the operator and forced to boot (--yes): it last saw %s running", strings.Join(waits, ", "))
		return d, nil
	}
	// The one that stopped last boots alone; the others load from it.
	for _, v := range withData {
		if v.bootsAlone() {
			d.First, d.Then = v.Name, others(v.Name)
			d.Why = aloneWhy(v) + ": it starts first, the others load from it"
			return d, nil
		}
	}
	// Stopped together (killed at once): each waits for the others, and
	// started at once they come up together.
	for _, v := range withData {
		if len(v.waitsFor(group)) == 0 {
			d.Then = names(withData)
			d.Why = "no node saw every other stop (they stopped at about the same time, or some lists are unknown): they start together and wait for each other"
			return d, nil
		}
	}
	// Every node with data waits for a member that cannot start with
	// them: unreachable, or reachable without data. The node that stopped
	// last among them (the fewest members running at its shutdown) is
	// the one to force, once the operator confirms the others are gone.
	last := withData[0]
	waited := map[string]bool{}
	for _, v := range withData {
		if len(v.RunningAtShutdown) < len(last.RunningAtShutdown) {
			last = v
		}
		for _, w := range v.waitsFor(group) {
			waited[w] = true
		}
	}
	gone := slices.Sorted(func(yield func(string) bool) {
		for w := range waited {
			if !yield(w) {
				return
			}
		}
	})
	var why []string
	for _, w := range gone {
		host := strings.TrimPrefix(w, "rabbit@")
		switch {
		case slices.Contains(d.Missing, host):
			why = append(why, host+" cannot be reached")
		case slices.Contains(d.Join, host):
			why = append(why, host+" holds no data (rebuilt or wiped)")
		default:
			why = append(why, host+" is no controller of the spec")
		}
	}
	if !o.Yes {
		return FullStart{}, &plan.Refusal{
			Problem: fmt.Sprintf("no broker runs, and %s wait at boot for %s, which they last saw running (%s): it stopped after them, and only it could start without waiting", strings.Join(names(withData), ", "), strings.Join(gone, ", "), strings.Join(why, "; ")),
			Remedy: fmt.Sprintf("bring it back and run 'hastack recover rabbitmq' again. If it is gone for good, 'hastack recover rabbitmq --yes' forces %s (the last of the others to stop) to boot without it (rabbitmqctl force_boot): what changed in the cluster's definitions after %s stopped is lost; quorum queues keep what a majority of their members hold. "+
				"'--boot-node NODE --yes' forces another node instead", last.Name, last.Name),
		}
	}
	d.First, d.Then, d.Force = last.Name, others(last.Name), true
	d.Why = fmt.Sprintf("the member that stopped last among those that can start (it last saw %d member(s) running), forced to boot without %s (%s), confirmed gone for good by --yes", len(last.RunningAtShutdown), strings.Join(gone, ", "), strings.Join(why, "; "))
	return d, nil
}

func aloneWhy(v NodeView) string {
	if v.ForceBoot {
		return "a force_boot is already set on it"
	}
	return "it stopped last (it saw every other member stop)"
}

func names(views []NodeView) []string {
	var out []string
	for _, v := range views {
		out = append(out, v.Name)
	}
	return out
}

// ForgetView is what the forget decision needs of one controller.
type ForgetView struct {
	Name      string
	Reachable bool
	Running   bool
	// Answers: its management API answered with the cluster's members.
	Answers bool
	HasData bool
	// SeenRunning: a running peer reports it running.
	SeenRunning bool
}

// Forget is how lost members are removed.
type Forget struct {
	// Members are the Erlang names to forget.
	Members []string
	// Via is the running controller that runs the commands.
	Via string
	// Wipe are reachable forgotten controllers whose stopped node still
	// holds data: moved aside, so they join again as new members.
	Wipe []string
}

// DecideForget checks the operator's --forget names against the
// controllers (spec order) and the cluster's members as a running node
// reports them. A member is forgotten only when it is gone: its host
// cannot be reached, or its broker is stopped; a broker process that runs
// without answering (hung) only with yes.
func DecideForget(views []ForgetView, members []string, forget []string, yes bool) (Forget, error) {
	var d Forget
	for _, name := range forget {
		host := strings.TrimPrefix(name, "rabbit@")
		member := "rabbit@" + host
		i := slices.IndexFunc(views, func(v ForgetView) bool { return v.Name == host })
		if i < 0 && !slices.Contains(members, member) {
			return Forget{}, &plan.Refusal{
				Problem: fmt.Sprintf("--forget %s: neither a controller of the spec nor a member of the cluster (%s)", name, strings.Join(members, ", ")),
				Remedy:  "name a member of the cluster",
			}
		}
		if i >= 0 {
			v := views[i]
			if v.Answers || v.SeenRunning {
				return Forget{}, &plan.Refusal{
					Problem: fmt.Sprintf("--forget %s: %s still answers and its broker runs", name, host),
					Remedy:  fmt.Sprintf("hastack forgets only a member that is gone. If %s is to leave the cluster, stop its broker first ('rabbitmqctl stop_app' there) and run again; if it is healthy, there is nothing to forget", host),
				}
			}
			if v.Reachable && v.Running && !yes {
				return Forget{}, &plan.Refusal{
					Problem: fmt.Sprintf("--forget %s: its broker process runs on %s but does not answer, and its peers see it stopped (hung?)", name, host),
					Remedy:  fmt.Sprintf("stop its broker if you can and run again; if %s is gone for good and will not resume, run again with --yes", host),
				}
			}
			if v.Reachable && v.HasData {
				d.Wipe = append(d.Wipe, host)
			}
		}
		if !slices.Contains(d.Members, member) {
			d.Members = append(d.Members, member)
		}
	}
	for _, v := range views {
		if v.Reachable && v.Answers && !slices.Contains(d.Members, "rabbit@"+v.Name) {
			d.Via = v.Name
			break
		}
	}
	if d.Via == "" {
		return Forget{}, &plan.Refusal{
			Problem: fmt.Sprintf("no other controller's broker runs, so %s cannot be forgotten now", strings.Join(d.Members, ", ")),
			Remedy:  "start the cluster first: 'hastack recover rabbitmq' (with --yes when the node to forget stopped last), then run again with --forget",
		}
	}
	return d, nil
}

// QueueMembers is one quorum queue's replicas.
type QueueMembers struct {
	Name    string // vhost/name, for messages
	VHost   string
	QName   string
	Members []string
	// Leader and Online are as the management API reports them.
	Leader string
	Online []string
}

// QueuesNotReady lists the quorum queues that have no leader or a member
// not online, with what is missing.
func QueuesNotReady(queues []QueueMembers) []string {
	var out []string
	for _, q := range queues {
		var off []string
		for _, m := range q.Members {
			if !slices.Contains(q.Online, m) {
				off = append(off, m)
			}
		}
		switch {
		case q.Leader == "":
			out = append(out, q.Name+" (no leader)")
		case len(off) > 0:
			out = append(out, q.Name+" ("+strings.Join(off, ", ")+" offline)")
		}
	}
	return out
}

// QueueRepairs says which nodes to shrink the quorum queues off (lost
// members still listed) and which to grow them onto (running controllers
// missing from a queue), from the queues' member lists.
func QueueRepairs(queues []QueueMembers, running, lost []string) (shrink, grow []string) {
	for _, q := range queues {
		for _, l := range lost {
			if slices.Contains(q.Members, l) && !slices.Contains(shrink, l) {
				shrink = append(shrink, l)
			}
		}
		for _, r := range running {
			if !slices.Contains(q.Members, r) && !slices.Contains(grow, r) {
				grow = append(grow, r)
			}
		}
	}
	slices.Sort(shrink)
	slices.Sort(grow)
	return shrink, grow
}

// raftHasLeader reports whether the output of 'rabbitmq-queues
// quorum_status' shows a member whose Raft state is leader: a queue
// answers only then. The management API's leader field is what the queue's
// record says, which can name a member that lost its state.
func raftHasLeader(out string) bool {
	for _, line := range strings.Split(out, "\n") {
		for _, f := range strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == '|' || r == '│' }) {
			if f == "leader" {
				return true
			}
		}
	}
	return false
}
