package rabbitmq

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
)

// refuseUnsafe refuses what no step of this phase should repair on its own:
// two clusters, a partition, members the spec does not have, a management
// API that refuses hastack's administrator, a cookie changed under a
// running cluster. Each error says what to do.
func refuseUnsafe(e *env, all []*facts) error {
	var errs []error
	want := map[string]bool{}
	for _, c := range e.ctls {
		want[NodeName(c)] = true
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
			errs = append(errs, &plan.Refusal{Problem: fmt.Sprintf("%s: the management API refuses hastack's administrator (%v)", f.n.Name, f.apiErr), Remedy: "if the secrets file was replaced, put back the one that deployed this cluster"})
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
		if heal := healable(e, all, partitioned); heal != nil {
			e.heal = heal
		} else {
			errs = append(errs, partitionError(e, partitioned, len(all)))
		}
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
		errs = append(errs, &plan.Refusal{
			Problem: fmt.Sprintf("the controllers run as %d separate RabbitMQ clusters (%s)", len(keys), strings.Join(parts, "; ")),
			Remedy: fmt.Sprintf("a node started blank while it could not reach its peers formed a cluster of its own. "+
				"To join such a node to the cluster of %s, discarding that node's own messages and definitions, run on it: rabbitmqctl stop_app; rabbitmqctl reset; rabbitmqctl join_cluster %s; rabbitmqctl start_app. Then run 'hastack up' again", first, first),
		})
	}
	for _, f := range all {
		if f.running && f.cookieChanged && nodesRunning > 1 {
			errs = append(errs, &plan.Refusal{
				Problem: f.n.Name + ": the Erlang cookie differs from the secrets file's while the broker runs in a cluster",
				Remedy:  "restarting the nodes one at a time with a new cookie would leave them unable to talk to each other. Put back the secrets file that deployed this cluster, or stop rabbitmq on every controller (an outage) and run 'hastack up' again",
			})
		}
	}
	// Every node reports the same partition or stray member: say it once.
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	errs = slices.CompactFunc(errs, func(a, b error) bool { return a.Error() == b.Error() })
	return errors.Join(errs...)
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
	return &plan.Refusal{
		Problem: fmt.Sprintf("no broker runs, and %s at boot for %s, which they last saw running but which has no data now (rebuilt, wiped, or no longer a controller), so it cannot come up before them: they would wait 5 minutes and fail", who, strings.Join(gone, ", ")),
		Remedy:  fmt.Sprintf("if that data is gone for good, 'hastack recover rabbitmq --yes' forces the one of them that stopped last to boot without waiting (rabbitmqctl force_boot) and starts the others; by hand: on %s (the one that stopped last, if you know it) run 'rabbitmqctl force_boot', then run 'hastack up' again", stuck[0]),
	}
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
	return &plan.Refusal{
		Problem: fmt.Sprintf("%s %s a cluster of [%s] that does not include %s, which hold the data of another RabbitMQ cluster (or were removed from this one): started, they would not join it", strings.Join(running, ", "), verb, members, strings.Join(names, ", ")),
		Remedy: fmt.Sprintf("keep one of the two clusters and wipe the nodes of the other: with the broker stopped, remove /var/lib/rabbitmq/mnesia/rabbit@<node>* on each, then run 'hastack up' again, and the wiped nodes join the cluster kept. "+
			"To keep the running cluster, wipe %s; to keep the other, stop the broker on %s and wipe it instead", strings.Join(strangers, ", "), strings.Join(running, ", ")),
	}
}

// partitionError explains a partition (every member reports the same, so
// it names no reporting node) and names the side to restart: the members
// cut off from more than half of the others. The remedy is RabbitMQ's own
// (what autoheal does by itself): restart the brokers of the minority so
// they rejoin the majority, dropping what only they received since the
// split. With no majority side, it says so and names none.
func partitionError(e *env, partitioned map[string][]string, clusterSize int) error {
	var lines []string
	for _, m := range slices.Sorted(maps.Keys(partitioned)) {
		slices.Sort(partitioned[m])
		lines = append(lines, fmt.Sprintf("%s cannot reach %s", m, strings.Join(partitioned[m], ", ")))
	}
	minority := minoritySide(partitioned, clusterSize)
	head := fmt.Sprintf("RabbitMQ is partitioned (%s); partition handling is %s", strings.Join(lines, "; "), e.t.Cluster.Spec.RabbitMQ.PartitionHandling)
	if minority == nil {
		return &plan.Refusal{
			Problem: fmt.Sprintf("%s. No node is cut off from a majority of the %d nodes (a partial partition, an even split, or a view not updated yet: a broker restarted a few seconds ago still shows in its peers' list for about 15 s), so hastack names none to restart", head, clusterSize),
			Remedy:  "if you just restarted one, wait and run 'hastack up' again; otherwise choose the side whose data to keep and restart the broker on every node of the other side ('rabbitmqctl stop_app; rabbitmqctl start_app' there), then run 'hastack up' again",
		}
	}
	hosts := make([]string, len(minority))
	for i, m := range minority {
		_, hosts[i], _ = strings.Cut(m, "@")
	}
	return &plan.Refusal{
		Problem: fmt.Sprintf("%s. The minority side is %s", head, strings.Join(hosts, ", ")),
		Remedy:  fmt.Sprintf("once the network between the nodes works (a frozen or paused node stays partitioned after it resumes), restart the broker there so it rejoins the majority, discarding what only it received since the split: on %s run 'rabbitmqctl stop_app; rabbitmqctl start_app', then run 'hastack up' again", strings.Join(hosts, " and ")),
	}
}

// minoritySide is the members cut off from more than half of the others,
// when they are fewer than half of the cluster: the side to restart. nil
// when no side is clearly the minority.
func minoritySide(partitioned map[string][]string, clusterSize int) []string {
	var minority []string
	for _, m := range slices.Sorted(maps.Keys(partitioned)) {
		if 2*len(partitioned[m]) > clusterSize-1 {
			minority = append(minority, m)
		}
	}
	if len(minority) == 0 || 2*len(minority) >= clusterSize {
		return nil
	}
	return minority
}

// healable returns the controllers 'up' may restart by itself to heal a
// partition, as RabbitMQ's autoheal would: the queues are quorum queues,
// whose confirmed messages live on a majority, so a restart of the nodes
// outside it discards nothing a publisher was told is safe; every
// controller's broker process runs (a majority paused by pause_minority
// resumes once the others rejoin); and one smallest set of fewer than half
// the nodes, once restarted, leaves the others all reaching each other
// (restartSet). With classic mirrored queues a minority may hold the only
// copy of confirmed messages: an operator decides (the refusal says how).
func healable(e *env, all []*facts, partitioned map[string][]string) []*facts {
	if e.t.Cluster.Spec.RabbitMQ.QueueType != spec.QueueQuorum {
		return nil
	}
	var names []string
	for _, f := range all {
		if !f.running {
			return nil
		}
		names = append(names, NodeName(f.n))
	}
	set := restartSet(names, partitioned)
	var heal []*facts
	for _, f := range all {
		if slices.Contains(set, NodeName(f.n)) {
			heal = append(heal, f)
		}
	}
	return heal
}

// restartSet is the smallest set of fewer than half the nodes whose removal
// leaves nodes that all reach each other, by the partition reports (a
// report of a cannot reach b counts both ways: views of a partition are
// often one-sided). When several sets of that size qualify, the one whose
// members the most reports name as unreachable wins (the node that hung is
// the one its peers gave up on); a tie is no answer: nil.
func restartSet(nodes []string, partitioned map[string][]string) []string {
	cut := map[[2]string]bool{}
	named := map[string]int{}
	for a, bs := range partitioned {
		for _, b := range bs {
			cut[[2]string{a, b}], cut[[2]string{b, a}] = true, true
			named[b]++
		}
	}
	if len(cut) == 0 {
		return nil
	}
	n := len(nodes)
	for size := 1; 2*size < n; size++ {
		var best []string
		bestScore, tie := -1, false
		for mask := 0; mask < 1<<n; mask++ {
			if bitsSet(mask) != size {
				continue
			}
			var out, in []string
			for i, name := range nodes {
				if mask&(1<<i) != 0 {
					out = append(out, name)
				} else {
					in = append(in, name)
				}
			}
			whole := true
			for _, a := range in {
				for _, b := range in {
					whole = whole && !cut[[2]string{a, b}]
				}
			}
			if !whole {
				continue
			}
			score := 0
			for _, o := range out {
				score += named[o]
			}
			switch {
			case score > bestScore:
				best, bestScore, tie = out, score, false
			case score == bestScore:
				tie = true
			}
		}
		if best != nil {
			if tie {
				return nil
			}
			return best
		}
	}
	return nil
}

func bitsSet(x int) int {
	c := 0
	for ; x > 0; x &= x - 1 {
		c++
	}
	return c
}

func strayError(member string) error {
	return &plan.Refusal{
		Problem: fmt.Sprintf("the cluster has member %s, which is no controller of the spec", member),
		Remedy:  fmt.Sprintf("if that node is gone for good, remove it with 'rabbitmqctl forget_cluster_node %s' on a running controller", member),
	}
}
