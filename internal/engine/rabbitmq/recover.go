package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
)

// RecoverPhase is the phase of 'hastack recover rabbitmq'. With every
// controller reachable and a broker running, it is the plan of 'up' (one
// code path: the partition heal, the starts of stopped members). Beyond
// that it starts a fully stopped cluster from the member that stopped last,
// forced to boot when that one is gone for good (and confirmed), goes on
// without controllers that cannot be reached, forgets lost members, and
// restores the quorum queues' membership.
func RecoverPhase(o RecoverOptions) plan.Phase {
	return plan.Phase{Name: "rabbitmq", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		return planRecover(ctx, t, o)
	}}
}

func planRecover(ctx context.Context, t *plan.Target, o RecoverOptions) ([]plan.Step, error) {
	e, all, err := newEnv(t)
	if e == nil || err != nil {
		return nil, err
	}
	if o.BootNode != "" && !slices.ContainsFunc(all, func(f *facts) bool { return f.n.Name == o.BootNode }) {
		return nil, &plan.Refusal{Problem: fmt.Sprintf("--boot-node %s is not a controller of the spec", o.BootNode), Remedy: "name one of " + strings.Join(slices.Sorted(maps.Keys(namesOf(all))), ", ")}
	}
	// A host that does not answer within the bound is unreachable;
	// whether that stops the recovery is the decision's to say.
	_ = plan.ForEach(ctx, slices.Sorted(maps.Keys(namesOf(all))), func(ctx context.Context, name string) error {
		f := all[slices.IndexFunc(all, func(f *facts) bool { return f.n.Name == name })]
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := f.nd.Run(actx, node.Cmd{Argv: []string{"true"}}); err != nil {
			var ce *node.CommandError
			if !errors.As(err, &ce) || actx.Err() != nil {
				f.unreachable = err
			}
		}
		return nil
	})
	var reach []*facts
	for _, f := range all {
		if f.unreachable != nil {
			e.say(f.n.Name, "cannot be reached: %v", f.unreachable)
			continue
		}
		reach = append(reach, f)
	}
	if len(reach) == 0 {
		return nil, &plan.Refusal{Problem: "no controller can be reached", Remedy: "bring at least one back"}
	}
	if err := gatherAll(ctx, e, reach); err != nil {
		return nil, err
	}
	for _, f := range reach {
		e.say(f.n.Name, "%s", describe(f))
	}
	if len(o.Forget) > 0 {
		return planForget(ctx, e, all, o)
	}
	running := slices.ContainsFunc(reach, func(f *facts) bool { return f.running })
	if !running {
		return planFullStart(e, all, reach, o)
	}
	if o.BootNode != "" {
		var up []string
		for _, f := range reach {
			if f.running {
				up = append(up, f.n.Name)
			}
		}
		return nil, &plan.Refusal{
			Problem: fmt.Sprintf("--boot-node %s: a broker runs on %s, so there is no full stop to start", o.BootNode, strings.Join(up, ", ")),
			Remedy:  "run 'hastack recover rabbitmq' without --boot-node: the stopped members join the running ones",
		}
	}
	if len(reach) == len(all) {
		// Every controller answers: the plan of 'up', and the quorum queues'
		// membership after it.
		steps, err := planFrom(ctx, e, all)
		if err != nil {
			return nil, err
		}
		return withQueueRepair(ctx, e, reach, nil, steps)
	}
	// Some controllers cannot be reached, the others run a cluster.
	var missing []string
	for _, f := range all {
		if f.unreachable != nil {
			missing = append(missing, f.n.Name)
		}
	}
	for _, f := range reach {
		for _, m := range f.members {
			if len(m.Partitions) > 0 {
				return nil, &plan.Refusal{
					Problem: fmt.Sprintf("RabbitMQ is partitioned (%s cannot reach %s) and %s cannot be reached, so the minority side is unknown", m.Name, strings.Join(m.Partitions, ", "), strings.Join(missing, ", ")),
					Remedy:  "bring it back and run 'hastack recover rabbitmq' again; if it is gone for good, forget it first: 'hastack recover rabbitmq --forget NODE'",
				}
			}
		}
	}
	e.say("all", "going on without %s (cannot be reached): it rejoins when it is back ('hastack up'); if it is gone for good, 'hastack recover rabbitmq --forget NODE' removes it", strings.Join(missing, ", "))
	steps, err := planFrom(ctx, e, reach)
	if err != nil {
		return nil, err
	}
	return withQueueRepair(ctx, e, reach, nil, steps)
}

// describe is one controller's state, for the operator.
func describe(f *facts) string {
	switch {
	case f.running && f.answers():
		return "broker running"
	case f.running:
		return fmt.Sprintf("broker running, management API not answering (%v)", f.apiErr)
	case !f.hasData:
		return "broker stopped, no data (blank)"
	}
	s := "broker stopped, data present"
	if f.runningAtShutdown != nil {
		s += "; members running when it stopped: " + strings.Join(f.runningAtShutdown, ", ")
	} else {
		s += "; members running when it stopped: unknown"
	}
	if f.forceBoot {
		s += "; force_boot set"
	}
	return s
}

func (f *facts) view() NodeView {
	if f.unreachable != nil {
		return NodeView{Name: f.n.Name}
	}
	return NodeView{Name: f.n.Name, Reachable: true, Running: f.running, HasData: f.hasData, RunningAtShutdown: f.runningAtShutdown, ForceBoot: f.forceBoot}
}

// planFullStart starts a cluster where no reachable broker runs, in the
// order DecideFullStart chose.
func planFullStart(e *env, all, reach []*facts, o RecoverOptions) ([]plan.Step, error) {
	views := make([]NodeView, len(all))
	byName := map[string]*facts{}
	for i, f := range all {
		views[i] = f.view()
		byName[f.n.Name] = f
	}
	d, err := DecideFullStart(views, o)
	if err != nil {
		return nil, err
	}
	if d.First != "" {
		verb := "starts first"
		if d.Force {
			verb = "is forced to boot first (rabbitmqctl force_boot)"
		}
		e.say(d.First, "%s: %s", verb, d.Why)
	} else {
		e.say("all", "%s start together: %s", strings.Join(d.Then, ", "), d.Why)
	}
	if len(d.Missing) > 0 {
		e.say("all", "going on without %s (cannot be reached): it rejoins when it is back ('hastack up')", strings.Join(d.Missing, ", "))
	}
	var steps []plan.Step
	for _, f := range reach {
		if s := prepareStep(f); s != nil {
			steps = append(steps, *s)
		}
	}
	up := map[string]bool{}
	wave := 1
	var last *facts
	if d.First != "" {
		f := byName[d.First]
		if d.Force {
			steps = append(steps, plan.Step{Host: f.n.Name, Wave: wave,
				Action: fmt.Sprintf("rabbitmqctl force_boot: %s boots without waiting for the members it last saw running", NodeName(f.n)),
				Do: func(ctx context.Context) error {
					_, err := f.nd.Run(ctx, node.Cmd{Argv: []string{"rabbitmqctl", "force_boot"}})
					return err
				}})
			f.forceBoot = true
			wave++
		}
		up[f.n.Name] = true
		steps = append(steps, startStep(e, f, wave, startAlone, maps.Clone(up), false))
		last = f
		wave++
	}
	if len(d.Then) > 0 {
		for _, n := range d.Then {
			up[n] = true
		}
		for _, n := range d.Then {
			steps = append(steps, startStep(e, byName[n], wave, startTogether, maps.Clone(up), false))
			last = byName[n]
		}
		wave++
	}
	for _, n := range d.Join {
		up[n] = true
		steps = append(steps, startStep(e, byName[n], wave, startJoin, maps.Clone(up), false))
		last = byName[n]
		wave++
	}
	steps = append(steps, checkStep(e, last, nil, wave, up))
	steps = append(steps, queueRepairStep(e, last, wave+1, nil))
	return steps, nil
}

// planForget removes lost members from the cluster and from every quorum
// queue, and grows the queues onto the running controllers.
func planForget(ctx context.Context, e *env, all []*facts, o RecoverOptions) ([]plan.Step, error) {
	views := make([]ForgetView, len(all))
	byName := map[string]*facts{}
	var members []string
	for i, f := range all {
		byName[f.n.Name] = f
		views[i] = ForgetView{Name: f.n.Name}
		if f.unreachable == nil {
			views[i] = ForgetView{Name: f.n.Name, Reachable: true, Running: f.running, Answers: f.answers(), HasData: f.hasData}
		}
		if f.answers() && members == nil {
			for _, m := range f.members {
				members = append(members, m.Name)
			}
		}
	}
	for i, f := range all {
		for _, g := range all {
			for _, m := range g.members {
				if g.answers() && m.Name == NodeName(f.n) && m.Running && g != f {
					views[i].SeenRunning = true
				}
			}
		}
	}
	d, err := DecideForget(views, members, o.Forget, o.Yes)
	if err != nil {
		return nil, err
	}
	via := byName[d.Via]
	for _, m := range via.members {
		if len(m.Partitions) > 0 {
			return nil, &plan.Refusal{
				Problem: fmt.Sprintf("RabbitMQ is partitioned (%s cannot reach %s)", m.Name, strings.Join(m.Partitions, ", ")),
				Remedy:  "heal the partition first ('hastack recover rabbitmq' without --forget), then forget the lost member",
			}
		}
	}
	var steps []plan.Step
	for _, m := range d.Members {
		if !slices.Contains(members, m) {
			e.say(via.n.Name, "%s is no member of the cluster any more; nothing to forget", m)
			continue
		}
		argv := []string{"rabbitmqctl", "forget_cluster_node", m}
		steps = append(steps, plan.Step{Host: via.n.Name, Wave: 0,
			Action: fmt.Sprintf("%s: %s is gone for good, remove it from the cluster", strings.Join(argv, " "), m),
			Do: func(ctx context.Context) error {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
				defer cancel()
				_, err := via.nd.Run(cctx, node.Cmd{Argv: argv})
				return err
			}})
	}
	for _, host := range d.Wipe {
		f := byName[host]
		steps = append(steps, plan.Step{Host: host, Wave: 1,
			Action: fmt.Sprintf("stop the broker if it runs, move %s's database aside (%s*): forgotten, it would not boot with it; with none it joins again as a new member on the next 'hastack recover rabbitmq' (or 'hastack up')", NodeName(f.n), mnesiaDir(f.n)),
			Do: func(ctx context.Context) error {
				if f.running {
					// A hung broker, forgotten with --yes: stopped first
					// (the supervisor kills what does not stop).
					if err := f.nd.Services().Stop(ctx, ServiceName, time.Minute); err != nil {
						return err
					}
				}
				aside := fmt.Sprintf("%s/forgotten-%s-%s", MnesiaBase, time.Now().UTC().Format("20060102T150405Z"), NodeName(f.n))
				_, err := f.nd.Run(ctx, node.Cmd{Argv: []string{"sh", "-c", `mkdir -p "$1" && for p in "$2"*; do [ -e "$p" ] && mv "$p" "$1"/; done; true`, "sh", aside, mnesiaDir(f.n)}})
				return err
			}})
	}
	expect := map[string]bool{}
	for _, f := range all {
		if f.answers() && !slices.Contains(d.Members, NodeName(f.n)) {
			expect[f.n.Name] = true
		}
	}
	steps = append(steps, queueRepairStep(e, via, 2, d.Members))
	steps = append(steps, checkStep(e, via, nil, 3, expect))
	return steps, nil
}

// withQueueRepair adds the quorum queues' repair after steps, or alone
// when steps is empty and a queue lacks a running controller.
func withQueueRepair(ctx context.Context, e *env, reach []*facts, lost []string, steps []plan.Step) ([]plan.Step, error) {
	var via *facts
	for _, f := range reach {
		if f.answers() {
			via = f
			break
		}
	}
	if slices.ContainsFunc(steps, func(s plan.Step) bool { return strings.HasPrefix(s.Action, queueRepairAction) }) && len(lost) == 0 {
		return steps, nil // planned already (a blank node joins)
	}
	if len(steps) > 0 {
		wave := 0
		for _, s := range steps {
			wave = max(wave, s.Wave+1)
		}
		if via == nil {
			via = reach[0]
		}
		return append(steps, queueRepairStep(e, via, wave, lost)), nil
	}
	if via == nil {
		return nil, nil
	}
	queues, err := e.api(via.n).quorumQueues(ctx)
	if err != nil {
		return nil, err
	}
	if shrink, grow := QueueRepairs(queues, runningMembers(via), lost); len(shrink)+len(grow) > 0 || len(QueuesNotReady(queues)) > 0 {
		return []plan.Step{queueRepairStep(e, via, 0, lost)}, nil
	}
	return nil, nil
}

// runningMembers are the members f's view shows running.
func runningMembers(f *facts) []string {
	var out []string
	for _, m := range f.members {
		if m.Running {
			out = append(out, m.Name)
		}
	}
	return out
}

const queueRepairAction = "restore the quorum queues' membership: a replica on every running controller"

// queueRepairStep shrinks every quorum queue off the lost members and grows
// it onto every running controller that lacks a replica. What to do is
// read when the step runs: after a start or a forget, the queues' members
// are only known then.
func queueRepairStep(e *env, via *facts, wave int, lost []string) plan.Step {
	action := queueRepairAction
	if len(lost) > 0 {
		action += ", none on " + strings.Join(lost, ", ")
	}
	action += " (rabbitmq-queues grow/shrink)"
	return plan.Step{Host: via.n.Name, Wave: wave, Action: action, Do: func(ctx context.Context) error {
		api := e.api(via.n)
		members, err := api.nodes(ctx)
		if err != nil {
			return err
		}
		var running []string
		for _, m := range members {
			if m.Running && !slices.Contains(lost, m.Name) {
				running = append(running, m.Name)
			}
		}
		queues, err := api.quorumQueues(ctx)
		if err != nil {
			return err
		}
		shrink, grow := QueueRepairs(queues, running, lost)
		if len(shrink)+len(grow) == 0 {
			e.say(via.n.Name, "every quorum queue (%d) has a replica on every running controller (%s)", len(queues), strings.Join(running, ", "))
			return queuesReady(ctx, e, via)
		}
		run := func(argv ...string) error {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			res, err := via.nd.Run(cctx, node.Cmd{Argv: argv})
			if err != nil {
				return err
			}
			e.say(via.n.Name, "%s: %s", strings.Join(argv, " "), strings.Join(strings.Fields(string(res.Stdout)), " "))
			return nil
		}
		for _, m := range shrink {
			if err := run("rabbitmq-queues", "shrink", m); err != nil {
				return err
			}
		}
		for _, m := range grow {
			if err := run("rabbitmq-queues", "grow", m, "all"); err != nil {
				return err
			}
		}
		queues, err = api.quorumQueues(ctx)
		if err != nil {
			return err
		}
		if shrink, grow := QueueRepairs(queues, running, lost); len(shrink)+len(grow) > 0 {
			return fmt.Errorf("%s: after grow/shrink, quorum queues still list %v and lack %v", via.n.Name, shrink, grow)
		}
		e.say(via.n.Name, "quorum queues (%d): replicas on %s", len(queues), strings.Join(running, ", "))
		return queuesReady(ctx, e, via)
	}}
}

// queuesReady waits until every quorum queue has a leader and every
// member online as the management API says, then until the Raft members
// of the queues (up to raftChecked of them) elected a leader for real
// ('rabbitmq-queues quorum_status'): only then do messages flow again.
// The API's leader is the queue record's, which can still name a member
// that lost its state (a rebuilt node).
func queuesReady(ctx context.Context, e *env, via *facts) error {
	start := time.Now()
	var queues []QueueMembers
	err := plan.WaitFor(ctx, "every quorum queue with a leader and every member online", 2*time.Minute, func(ctx context.Context) (bool, string) {
		var err error
		if queues, err = e.api(via.n).quorumQueues(ctx); err != nil {
			return false, err.Error()
		}
		if bad := QueuesNotReady(queues); len(bad) > 0 {
			return false, strings.Join(bad, "; ")
		}
		return true, ""
	})
	if err != nil {
		return fmt.Errorf("%s: %w", via.n.Name, err)
	}
	if len(queues) == 0 {
		return nil
	}
	checked := queues
	if len(checked) > raftChecked {
		checked = checked[:raftChecked]
	}
	for _, q := range checked {
		var last string
		err := plan.WaitFor(ctx, "quorum queue "+q.Name+" to elect a leader", 2*time.Minute, func(ctx context.Context) (bool, string) {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			res, err := via.nd.Run(cctx, node.Cmd{Argv: []string{"rabbitmq-queues", "quorum_status", "--vhost", q.VHost, q.QName}})
			if err != nil {
				return false, err.Error()
			}
			last = string(res.Stdout)
			if !raftHasLeader(last) {
				return false, "no member is leader yet"
			}
			return true, ""
		})
		if err != nil {
			return fmt.Errorf("%s: %w. Members that stay followers at term 0 with log index 0 came back as new members: RabbitMQ 3.10 lost their registration (names.dets) when they were killed, and the queue's messages sit unused in their old folders under quorum/ (a known RabbitMQ problem, rabbitmq-server#15725); hastack cannot mend that: the queue must be deleted and declared again. rabbitmq-queues quorum_status said:\n%s", via.n.Name, err, last)
		}
	}
	what := fmt.Sprintf("every quorum queue (%d)", len(queues))
	if len(checked) < len(queues) {
		what = fmt.Sprintf("the quorum queues (%d; the Raft leader asked of the first %d)", len(queues), len(checked))
	}
	e.say(via.n.Name, "%s: a leader elected and every member online (%s)", what, time.Since(start).Round(time.Millisecond))
	return nil
}

// raftChecked bounds the quorum queues whose Raft leader is asked with
// one CLI call each (an Erlang VM boots for every call, about a second).
const raftChecked = 20

// quorumQueues lists the quorum queues with their members.
func (m *mgmt) quorumQueues(ctx context.Context) ([]QueueMembers, error) {
	var qs []apiQueue
	if err := m.call(ctx, http.MethodGet, "/api/queues?columns=name,vhost,type,members,leader,online&disable_stats=true", nil, &qs); err != nil {
		return nil, err
	}
	var out []QueueMembers
	for _, q := range qs {
		if q.Type == "quorum" {
			out = append(out, QueueMembers{Name: q.VHost + "/" + q.Name, VHost: q.VHost, QName: q.Name, Members: q.Members, Leader: q.Leader, Online: q.Online})
		}
	}
	return out, nil
}
