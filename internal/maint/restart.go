// Package maint is rolling maintenance: the engines of one node at a time
// are restarted, each drained of its clients first, and the next node
// waits until the whole layer is healthy again.
//
// Before the engines of a controller stop:
//   - the database writes leave it when it takes them: its server is put in
//     maintenance on every controller's HAProxy and its sessions are cut,
//     so clients reconnect at once to the next Synced node (the shared
//     stick table keeps the writes there afterwards);
//   - the VIP leaves it when it holds it: keepalived is stopped gracefully,
//     which tells the others at once (a priority-0 advert);
//   - RabbitMQ is put in maintenance mode (rabbitmq-upgrade drain): its
//     client connections are closed, so clients reconnect to the other
//     brokers, and its quorum queue leaders move to the other members. It
//     is refused when stopping the node would cost a quorum queue its
//     majority (rabbitmq-upgrade await_online_quorum_plus_one).
//
// Then its services stop gracefully, 'up' starts them as it would after a
// reboot (Galera rejoins by IST, RabbitMQ rejoins its cluster), what was
// drained is put back in service, and the next node waits for 'status'
// healthy. The writer and the VIP holder go last, so the writes and the VIP
// move once each.
package maint

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hastack/hastack/internal/engine/endpoint"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engines"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/status"
)

// Options shape one rolling restart.
type Options struct {
	// Engines to restart, by name (engines.WithServices); empty: every engine.
	Engines []string
	// Nodes to restart, by name; empty: every node that runs one of the
	// engines.
	Nodes []string
	// Status reports the layer as 'hastack status' does.
	Status func(ctx context.Context) status.Report
	// Up starts what is stopped, as 'hastack up' does (under the lock the
	// caller holds).
	Up func(ctx context.Context) error
	// Say receives progress lines; each names its node.
	Say func(format string, a ...any)
	// HealthyBound bounds the wait for 'status' healthy after each node
	// (default 3 minutes).
	HealthyBound time.Duration
}

// NodeResult is what the restart did to one node.
type NodeResult struct {
	Node    string        `json:"node"`
	Engines []string      `json:"engines"`
	Took    time.Duration `json:"tookNs"`
	Actions []string      `json:"actions"`
}

// Result is the whole restart.
type Result struct {
	Nodes []NodeResult  `json:"nodes"`
	Took  time.Duration `json:"tookNs"`
}

// UsageError is a request that names an engine or node that does not
// exist; nothing was done.
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

// EngineNames are the engines a restart can name.
func EngineNames() []string {
	var out []string
	for _, e := range engines.WithServices() {
		out = append(out, e.Name)
	}
	return out
}

// step is one node's restart, planned from the cluster's state.
type step struct {
	n       spec.Node
	engines []engines.Engine
	// touchesDB: the node's database or its health check stops, so the
	// writes must leave it when it takes them. touchesVIP: its keepalived
	// stops, so the VIP must leave it when it holds it.
	touchesDB, touchesVIP bool
	// writer, holder: as the latest status saw it.
	writer, holder bool
	rabbitmq       bool
}

// judge marks the step's node as the writer and the VIP holder as rep
// sees them now.
func (s *step) judge(rep status.Report) {
	s.writer = s.touchesDB && s.n.Name == rep.Writer
	s.holder = false
	for _, e := range rep.Services.Endpoint {
		if e.HoldsVIP && e.Node == s.n.Name {
			s.holder = s.touchesVIP
		}
	}
}

// order orders the nodes: the ones that neither hold the VIP nor take the
// writes first, in spec order, then the VIP holder, then the writer. It
// only reads.
func order(c *spec.Cluster, rep status.Report, o Options) ([]step, error) {
	all := engines.WithServices()
	var chosen []engines.Engine
	if len(o.Engines) == 0 {
		chosen = all
	} else {
		for _, name := range o.Engines {
			i := slices.IndexFunc(all, func(e engines.Engine) bool { return e.Name == name })
			if i < 0 {
				return nil, &UsageError{fmt.Sprintf("restart: no engine %q; the engines are %s", name, strings.Join(EngineNames(), ", "))}
			}
			if !slices.ContainsFunc(chosen, func(e engines.Engine) bool { return e.Name == name }) {
				chosen = append(chosen, all[i])
			}
		}
		// Deploy order, whatever order they were named in.
		slices.SortFunc(chosen, func(a, b engines.Engine) int {
			return slices.IndexFunc(all, func(e engines.Engine) bool { return e.Name == a.Name }) -
				slices.IndexFunc(all, func(e engines.Engine) bool { return e.Name == b.Name })
		})
	}
	nodes := c.Spec.Nodes
	if len(o.Nodes) > 0 {
		nodes = nil
		for _, name := range o.Nodes {
			n, ok := c.Node(name)
			if !ok {
				var names []string
				for _, n := range c.Spec.Nodes {
					names = append(names, n.Name)
				}
				return nil, &UsageError{fmt.Sprintf("restart: no node %q in the spec; the nodes are %s", name, strings.Join(names, ", "))}
			}
			if !slices.ContainsFunc(nodes, func(m spec.Node) bool { return m.Name == name }) {
				nodes = append(nodes, n)
			}
		}
	}
	var steps []step
	for _, n := range nodes {
		s := step{n: n}
		for _, e := range chosen {
			if len(e.Packages[n.Role]) > 0 {
				s.engines = append(s.engines, e)
			}
		}
		if len(s.engines) == 0 {
			if len(o.Nodes) > 0 {
				return nil, &UsageError{fmt.Sprintf("restart: %s (%s) runs none of %s", n.Name, n.Role, strings.Join(names(chosen), ", "))}
			}
			continue
		}
		has := func(name string) bool {
			return slices.ContainsFunc(s.engines, func(e engines.Engine) bool { return e.Name == name })
		}
		// The writer's database stops with galera; its health check (and
		// so HAProxy's view of it) with the endpoint.
		s.touchesDB = has("galera") || has("endpoint")
		s.touchesVIP = has("endpoint")
		s.rabbitmq = has("rabbitmq")
		s.judge(rep)
		steps = append(steps, s)
	}
	rank := func(s step) int {
		switch {
		case s.writer:
			return 2
		case s.holder:
			return 1
		}
		return 0
	}
	slices.SortStableFunc(steps, func(a, b step) int { return rank(a) - rank(b) })
	return steps, nil
}

func names(es []engines.Engine) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

// Restart restarts the chosen engines on the chosen nodes, one node at a
// time. It refuses to begin unless the layer is healthy, and stops at the
// first node that does not come back healthy, saying which nodes are done
// and how to go on.
func Restart(ctx context.Context, c *spec.Cluster, nodes map[string]node.Node, o Options) (Result, error) {
	if o.HealthyBound == 0 {
		o.HealthyBound = 3 * time.Minute
	}
	if o.Say == nil {
		o.Say = func(string, ...any) {}
	}
	start := time.Now()
	rep := o.Status(ctx)
	if !rep.Healthy {
		return Result{}, fmt.Errorf("restart refused: the layer is not healthy, and a rolling restart takes one node out of it at a time:\n  %s\nnothing was changed; 'hastack up' repairs what it can", strings.Join(rep.Problems, "\n  "))
	}
	steps, err := order(c, rep, o)
	if err != nil {
		return Result{}, err
	}
	var res Result
	var done []string
	for i, s := range steps {
		if i > 0 {
			// The order was planned from the first status; the writer
			// may have moved since (a failure elsewhere): plan again
			// from now for the nodes left.
			rep = o.Status(ctx)
			if !rep.Healthy {
				return res, stopped(done, steps[i:], fmt.Errorf("the layer is not healthy before %s:\n  %s", s.n.Name, strings.Join(rep.Problems, "\n  ")))
			}
		}
		s.judge(rep)
		nr, err := restartNode(ctx, c, nodes, s, o)
		res.Nodes = append(res.Nodes, nr)
		if err != nil {
			// The node that failed is among those left: it may not have
			// been restarted at all (a refusal comes before anything
			// stops), and restarting it again is harmless.
			return res, stopped(done, steps[i:], fmt.Errorf("%s: %w", s.n.Name, err))
		}
		done = append(done, s.n.Name)
	}
	res.Took = time.Since(start)
	return res, nil
}

// stopped says where a restart stopped and how to go on.
func stopped(done []string, left []step, err error) error {
	var rest []string
	for _, s := range left {
		rest = append(rest, s.n.Name)
	}
	msg := "restart stopped"
	if len(done) > 0 {
		msg += " (done: " + strings.Join(done, ", ") + ")"
	}
	msg += ": " + err.Error()
	if len(rest) > 0 {
		msg += fmt.Sprintf("\nonce 'hastack status' is healthy again ('hastack up' starts what is stopped), go on with: hastack restart --node %s", strings.Join(rest, ","))
	}
	return errors.New(msg)
}

// restartNode drains, stops, starts and puts back one node.
func restartNode(ctx context.Context, c *spec.Cluster, nodes map[string]node.Node, s step, o Options) (NodeResult, error) {
	start := time.Now()
	nr := NodeResult{Node: s.n.Name, Engines: names(s.engines)}
	nd := nodes[s.n.Name]
	say := func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		nr.Actions = append(nr.Actions, line)
		o.Say("[restart] %s: %s", s.n.Name, line)
	}
	// What was drained is put back whatever happens below.
	var putBack []func(context.Context) error
	defer func() {
		bctx := context.WithoutCancel(ctx)
		for i := len(putBack) - 1; i >= 0; i-- {
			if err := putBack[i](bctx); err != nil {
				o.Say("[restart] %s: putting back: %v", s.n.Name, err)
			}
		}
	}()
	ctls := c.Controllers()
	if s.writer {
		if err := haproxyAll(ctx, ctls, nodes, false, fmt.Sprintf("set server %s/%s state maint", endpoint.Backend, s.n.Name), fmt.Sprintf("shutdown sessions server %s/%s", endpoint.Backend, s.n.Name)); err != nil {
			return nr, fmt.Errorf("moving the database writes off it: %w", err)
		}
		putBack = append(putBack, func(ctx context.Context) error {
			// A stopped HAProxy (this node's, restarted) starts again
			// with every server in service.
			return haproxyAll(ctx, ctls, nodes, true, fmt.Sprintf("set server %s/%s state ready", endpoint.Backend, s.n.Name))
		})
		w, err := waitFor(ctx, 15*time.Second, o.Status, func(r status.Report) (string, bool) { return r.Writer, r.Writer != "" && r.Writer != s.n.Name })
		if err != nil {
			return nr, fmt.Errorf("the database writes did not move off it: %w", err)
		}
		say("database writes moved to %s (its HAProxy server in maintenance on every controller, its sessions cut)", w)
	}
	if s.holder {
		if err := nd.Services().Stop(ctx, endpoint.KeepalivedService, 30*time.Second); err != nil {
			return nr, fmt.Errorf("stopping keepalived to move the VIP: %w", err)
		}
		h, err := waitFor(ctx, 15*time.Second, o.Status, func(r status.Report) (string, bool) {
			for _, e := range r.Services.Endpoint {
				if e.HoldsVIP && e.Node != s.n.Name {
					return e.Node, true
				}
			}
			return "", false
		})
		if err != nil {
			return nr, fmt.Errorf("the VIP did not move off it: %w", err)
		}
		say("VIP moved to %s (keepalived stopped gracefully)", h)
	}
	if s.rabbitmq {
		if _, err := nd.Run(ctx, node.Cmd{Argv: []string{"rabbitmq-upgrade", "-t", "60", "await_online_quorum_plus_one"}}); err != nil {
			return nr, fmt.Errorf("stopping its broker would leave a quorum queue without a majority (rabbitmq-upgrade await_online_quorum_plus_one): %w", err)
		}
		if _, err := nd.Run(ctx, node.Cmd{Argv: []string{"rabbitmq-upgrade", "-t", "120", "drain"}}); err != nil {
			return nr, fmt.Errorf("putting its broker in maintenance mode (rabbitmq-upgrade drain): %w", err)
		}
		putBack = append(putBack, func(ctx context.Context) error { return revive(ctx, nd) })
		say("RabbitMQ in maintenance mode: client connections closed, quorum queue leaders moved to the other members")
	}
	// Stop in the reverse of the deploy order: the endpoint before the
	// database it checks.
	var stoppedNames []string
	for i := len(s.engines) - 1; i >= 0; i-- {
		svcs := s.engines[i].Services
		for j := len(svcs) - 1; j >= 0; j-- {
			name := svcs[j].Name
			timeout := 60 * time.Second
			if name == galera.ServiceName {
				// A clean shutdown leaves the cluster gracefully and
				// flushes InnoDB; a big buffer pool takes a while.
				timeout = 5 * time.Minute
			}
			if err := nd.Services().Stop(ctx, name, timeout); err != nil {
				return nr, fmt.Errorf("stopping %s: %w", name, err)
			}
			stoppedNames = append(stoppedNames, name)
		}
	}
	say("stopped %s", strings.Join(stoppedNames, ", "))
	// The HAProxy servers are put back before 'up': 'up' ends with status
	// healthy, which a server in maintenance is not. The node's database is
	// down meanwhile, so HAProxy's checks keep it out until it is Synced,
	// and the stick table keeps the writes where they went.
	if s.writer && len(putBack) > 0 {
		if err := putBack[0](ctx); err != nil {
			return nr, fmt.Errorf("putting its HAProxy server back in service: %w", err)
		}
		putBack = putBack[1:]
	}
	ustart := time.Now()
	if err := o.Up(ctx); err != nil {
		return nr, fmt.Errorf("'up' starting it again: %w", err)
	}
	say("started again by 'up' in %s", time.Since(ustart).Round(time.Millisecond))
	if s.rabbitmq {
		if err := revive(ctx, nd); err != nil {
			return nr, err
		}
		putBack = putBack[:0]
		say("RabbitMQ out of maintenance mode")
	}
	if _, err := waitFor(ctx, o.HealthyBound, o.Status, func(r status.Report) (string, bool) { return "", r.Healthy }); err != nil {
		return nr, fmt.Errorf("status not healthy after its restart: %w", err)
	}
	nr.Took = time.Since(start)
	say("done, layer healthy, in %s", nr.Took.Round(time.Millisecond))
	return nr, nil
}

// revive takes a broker out of maintenance mode (nothing when it is not in
// it).
func revive(ctx context.Context, nd node.Node) error {
	if _, err := nd.Run(ctx, node.Cmd{Argv: []string{"rabbitmq-upgrade", "-t", "60", "revive"}}); err != nil {
		return fmt.Errorf("taking its broker out of maintenance mode (rabbitmq-upgrade revive): %w", err)
	}
	return nil
}

// haproxyAll sends commands to every controller's HAProxy over its admin
// socket, in parallel; with runningOnly, a controller whose HAProxy is
// stopped is passed over.
func haproxyAll(ctx context.Context, ctls []spec.Node, nodes map[string]node.Node, runningOnly bool, cmds ...string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(ctls))
	for i, n := range ctls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nd := nodes[n.Name]
			if nd == nil {
				errs[i] = fmt.Errorf("%s: not reachable", n.Name)
				return
			}
			if runningOnly {
				if st, err := nd.Services().Status(ctx, endpoint.HAProxyService); err == nil && !st.Running {
					return
				}
			}
			for _, cmd := range cmds {
				res, err := nd.Run(ctx, node.Cmd{Argv: []string{"socat", "stdio", endpoint.AdminSocket}, Stdin: strings.NewReader(cmd + "\n")})
				if err != nil {
					errs[i] = fmt.Errorf("%s: HAProxy %q: %w", n.Name, cmd, err)
					return
				}
				// The admin socket answers an empty line when it did it,
				// and says why when it did not.
				if out := strings.TrimSpace(string(res.Stdout)); out != "" {
					errs[i] = fmt.Errorf("%s: HAProxy %q: %s", n.Name, cmd, out)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitFor asks status until ok says so, or the time is up.
func waitFor(ctx context.Context, bound time.Duration, st func(context.Context) status.Report, ok func(status.Report) (string, bool)) (string, error) {
	deadline := time.Now().Add(bound)
	for {
		r := st(ctx)
		if v, good := ok(r); good {
			return v, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("not within %s; status says:\n  %s", bound, strings.Join(r.Problems, "\n  "))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
