package maint

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/engine/endpoint"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/memcached"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/engines"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/openstack"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/status"
)

// Adding and removing a node: the spec file gains or loses the node, and
// 'up' renders every other node for the new membership (Galera's cluster
// address, HAProxy's servers, keepalived's peers, RabbitMQ's peers, the
// chrony hierarchy, the services' memcached list) and restarts what changed
// one node at a time. Around that:
//
// A removal is refused unless at least two controllers stay and every other
// controller's database and broker are healthy. The writes and the VIP move
// off the node first; its broker stops and is removed from the RabbitMQ
// cluster and every quorum queue; its database stops cleanly (Galera sees
// it leave, so the others keep their quorum); its other services stop and,
// under systemd, are disabled (a reboot must not bring a removed member
// back); its Galera data is moved aside. Only then is the spec written.
//
// An addition is refused unless the layer is healthy and the node can be
// reached; data the node still holds is moved aside only with Yes. After
// 'up' every quorum queue grows onto it.
//
// Both say how many of the keys cached now the services will miss once,
// because python-memcached hashes keys mod the number of servers.

// MembershipOptions wire an addition or a removal to the cluster, as the
// spec has it now (before) and as it will (after).
type MembershipOptions struct {
	// Yes confirms that data a node to add still holds may be moved aside.
	Yes bool
	// Status reports the layer under the spec before the change;
	// StatusAfter under the spec after it.
	Status, StatusAfter func(ctx context.Context) status.Report
	// Forget removes a broker from the RabbitMQ cluster and its quorum
	// queues, and moves its database aside (spec before).
	Forget func(ctx context.Context, name string) error
	// Write writes the spec after the change to its file.
	Write func() error
	// Up runs 'hastack up' under the spec after the change.
	Up func(ctx context.Context) error
	// Queues gives every quorum queue a replica on every running
	// controller (spec after).
	Queues func(ctx context.Context) error
	// Say receives progress lines.
	Say func(format string, a ...any)
	// HealthyBound bounds the wait for 'status' healthy at the end
	// (default 5 minutes).
	HealthyBound time.Duration
}

// MembershipResult is what an addition or removal did.
type MembershipResult struct {
	Node string `json:"node"`
	// Op is "add" or "remove".
	Op string `json:"op"`
	// Cache counts the keys the services miss once because their
	// memcached list changed; CacheErr says why they could not be counted.
	Cache    memcached.Moves `json:"cache"`
	CacheErr string          `json:"cacheError,omitempty"`
	// Aside are the folders where the node's data was moved.
	Aside []string `json:"aside,omitempty"`
	// Donor is the controller that sent an added controller its database.
	Donor   string        `json:"donor,omitempty"`
	Took    time.Duration `json:"tookNs"`
	Actions []string      `json:"actions"`
}

// CheckRemove judges, from status, whether controller n may be removed:
// at least two controllers stay, and every other one has a healthy
// database and broker. It only reads.
func CheckRemove(before *spec.Cluster, rep status.Report, n spec.Node) error {
	var others []string
	for _, c := range before.Controllers() {
		if c.Name != n.Name {
			others = append(others, c.Name)
		}
	}
	if len(others) < 2 {
		return &plan.Refusal{
			Problem: fmt.Sprintf("node remove %s refused: it would leave %d controller(s), and hastack keeps at least 2 (Galera and RabbitMQ need a majority, which one node alone cannot lose and keep); nothing was changed", n.Name, len(others)),
			Remedy:  "add a controller first ('hastack node add'), or replace this one ('hastack node replace " + n.Name + "')",
		}
	}
	healthy := func(node string) (db, bus bool) {
		for _, g := range rep.Services.Galera {
			if g.Node == node {
				db = g.Healthy
			}
		}
		for _, r := range rep.Services.RabbitMQ {
			if r.Node == node {
				bus = r.Healthy
			}
		}
		return db, bus
	}
	var short []string
	for _, o := range others {
		db, bus := healthy(o)
		if !db {
			short = append(short, o+"'s database is not Synced in the Primary component")
		}
		if !bus {
			short = append(short, o+"'s broker does not run in the cluster")
		}
	}
	if len(short) > 0 {
		return &plan.Refusal{
			Problem: fmt.Sprintf("node remove %s refused: every controller that stays must be healthy, or the removal leaves the cluster without a majority, and %s; nothing was changed", n.Name, strings.Join(short, "; ")),
			Remedy:  "bring them back first ('hastack up', or 'hastack recover galera' / 'hastack recover rabbitmq'), then remove the node",
		}
	}
	return nil
}

func (o *MembershipOptions) defaults() {
	if o.HealthyBound == 0 {
		o.HealthyBound = 5 * time.Minute
	}
	if o.Say == nil {
		o.Say = func(string, ...any) {}
	}
}

// cacheMoves counts what the change of the services' memcached list from
// before to after does to the keys cached now.
func cacheMoves(ctx context.Context, before, after *spec.Cluster) (memcached.Moves, error) {
	old, new := openstack.MemcachedServers(before), openstack.MemcachedServers(after)
	held := map[string][]string{}
	var errs []string
	for _, srv := range old {
		keys, err := memcached.Keys(ctx, srv)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		held[srv] = keys
	}
	m := memcached.KeyMoves(held, old, new)
	if len(errs) > 0 {
		return m, fmt.Errorf("not counted on every server: %s", strings.Join(errs, "; "))
	}
	return m, nil
}

// sayCache reports the cache's share of the change.
func (r *MembershipResult) sayCache(m memcached.Moves, err error, say func(string, ...any)) {
	r.Cache = m
	if err != nil {
		r.CacheErr = err.Error()
		say("memcached keys: %v", err)
	}
	pct := func(n int) float64 {
		if m.Keys == 0 {
			return 0
		}
		return 100 * float64(n) / float64(m.Keys)
	}
	gone := ""
	if m.Gone > 0 {
		gone = fmt.Sprintf(", and %d (%.0f %%) go with the removed server", m.Gone, pct(m.Gone))
	}
	say("the services' memcached list changes: of %d keys cached now, %d (%.0f %%) are looked for on another server and missed once%s (python-memcached hashes keys mod the number of servers)", m.Keys, m.Moved, pct(m.Moved), gone)
}

// Remove takes node name out of the cluster and out of the spec. before
// and after are the spec with and without it; nodes reach before's nodes.
func Remove(ctx context.Context, before, after *spec.Cluster, nodes map[string]node.Node, name string, o MembershipOptions) (MembershipResult, error) {
	o.defaults()
	start := time.Now()
	res := MembershipResult{Node: name, Op: "remove"}
	say := func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		res.Actions = append(res.Actions, line)
		o.Say("[node remove] %s: %s", name, line)
	}
	n, ok := before.Node(name)
	if !ok {
		return res, &UsageError{fmt.Sprintf("node remove: no node %q in the spec", name)}
	}
	nd := nodes[name]
	reachable := false
	if nd != nil {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := nd.Run(rctx, node.Cmd{Argv: []string{"true"}})
		cancel()
		reachable = err == nil
		if err != nil {
			say("cannot be reached (%v): taken for gone for good; nothing is stopped on it", err)
		}
	}
	if n.IsController() {
		rep := o.Status(ctx)
		if err := CheckRemove(before, rep, n); err != nil {
			return res, err
		}
		m, err := cacheMoves(ctx, before, after)
		res.sayCache(m, err, say)
		if reachable {
			if st, err := nd.Services().Status(ctx, rabbitmq.ServiceName); err == nil && st.Running {
				if _, err := nd.Run(ctx, node.Cmd{Argv: []string{"rabbitmq-upgrade", "-t", "60", "await_online_quorum_plus_one"}}); err != nil {
					return res, &plan.Refusal{
						Problem: fmt.Sprintf("node remove %s refused: without its broker a quorum queue would have no majority (rabbitmq-upgrade await_online_quorum_plus_one: %v); nothing was changed", name, err),
						Remedy:  "wait until every quorum queue has its members online ('hastack status'), then try again",
					}
				}
			}
		}
		if err := leaveController(ctx, before, nodes, n, nd, reachable, rep, o, say, &res); err != nil {
			return res, fmt.Errorf("node remove %s stopped: %w\nthe spec still lists it; once the cause is fixed, run 'hastack node remove %s' again: it goes on from what is in place", name, err, name)
		}
	}
	if err := o.Write(); err != nil {
		return res, fmt.Errorf("node remove %s: writing the spec without it: %w", name, err)
	}
	say("removed from the spec file")
	if err := o.Up(ctx); err != nil {
		return res, fmt.Errorf("node remove %s: 'up' for the new membership: %w\nthe spec no longer lists it; once the cause is fixed, run 'hastack up'", name, err)
	}
	say("the other nodes now run the membership without it ('up')")
	if _, err := waitFor(ctx, o.HealthyBound, o.StatusAfter, func(r status.Report) (string, bool) { return "", r.Healthy }); err != nil {
		return res, fmt.Errorf("node remove %s: status not healthy after the removal: %w", name, err)
	}
	if !n.IsController() {
		say("hastack no longer looks after it; its chrony keeps running with the configuration it has")
	}
	res.Took = time.Since(start)
	say("done, layer healthy, in %s", res.Took.Round(time.Millisecond))
	return res, nil
}

// leaveController moves the writes and the VIP off controller n, removes
// its broker from the RabbitMQ cluster, stops its database so that Galera
// sees it leave, stops and disables its other services except the time
// service, and moves its Galera data aside. Each step is skipped when it
// is done already, so running it again goes on.
func leaveController(ctx context.Context, before *spec.Cluster, nodes map[string]node.Node, n spec.Node, nd node.Node, reachable bool, rep status.Report, o MembershipOptions, say func(string, ...any), res *MembershipResult) error {
	ctls := before.Controllers()
	if rep.Writer == n.Name {
		if err := haproxyAll(ctx, ctls, nodes, true, fmt.Sprintf("set server %s/%s state maint", endpoint.Backend, n.Name), fmt.Sprintf("shutdown sessions server %s/%s", endpoint.Backend, n.Name)); err != nil {
			return fmt.Errorf("moving the database writes off it: %w", err)
		}
		w, err := waitFor(ctx, 15*time.Second, o.Status, func(r status.Report) (string, bool) { return r.Writer, r.Writer != "" && r.Writer != n.Name })
		if err != nil {
			return fmt.Errorf("the database writes did not move off it: %w", err)
		}
		say("database writes moved to %s (its HAProxy server in maintenance on every controller, its sessions cut)", w)
	}
	for _, e := range rep.Services.Endpoint {
		if !e.HoldsVIP || e.Node != n.Name || !reachable {
			continue
		}
		if err := nd.Services().Stop(ctx, endpoint.KeepalivedService, 30*time.Second); err != nil {
			return fmt.Errorf("stopping keepalived to move the VIP: %w", err)
		}
		h, err := waitFor(ctx, 15*time.Second, o.Status, func(r status.Report) (string, bool) {
			for _, e := range r.Services.Endpoint {
				if e.HoldsVIP && e.Node != n.Name {
					return e.Node, true
				}
			}
			return "", false
		})
		if err != nil {
			return fmt.Errorf("the VIP did not move off it: %w", err)
		}
		say("VIP moved to %s (keepalived stopped gracefully)", h)
	}
	if reachable {
		if err := nd.Services().Stop(ctx, rabbitmq.ServiceName, time.Minute); err != nil {
			return fmt.Errorf("stopping its broker: %w", err)
		}
		if _, err := waitFor(ctx, time.Minute, o.Status, func(r status.Report) (string, bool) {
			for _, e := range r.Services.RabbitMQ {
				if e.Node == n.Name && e.Running {
					return "", false
				}
			}
			return "", true
		}); err != nil {
			return fmt.Errorf("its peers still see its broker running: %w", err)
		}
	}
	if err := o.Forget(ctx, n.Name); err != nil {
		return fmt.Errorf("removing it from the RabbitMQ cluster: %w", err)
	}
	say("removed from the RabbitMQ cluster and its quorum queues")
	if !reachable {
		say("its services could not be stopped: if the host comes back, wipe it before it starts mariadb or rabbitmq, or it tries to rejoin")
		return nil
	}
	// Every service but the time: reverse deploy order, the database with
	// a clean-shutdown bound (Galera sees it leave).
	var stopped []string
	all := engines.WithServices()
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Name == "chrony" || len(all[i].Packages[n.Role]) == 0 {
			continue
		}
		svcs := all[i].Services
		for j := len(svcs) - 1; j >= 0; j-- {
			svc := svcs[j].Name
			timeout := time.Minute
			if svc == galera.ServiceName {
				timeout = 5 * time.Minute
			}
			st, err := nd.Services().Status(ctx, svc)
			if err != nil {
				return err
			}
			if st.Running {
				if err := nd.Services().Stop(ctx, svc, timeout); err != nil {
					return fmt.Errorf("stopping %s: %w", svc, err)
				}
				stopped = append(stopped, svc)
			}
			if d, ok := nd.Services().(node.Disabler); ok {
				if err := d.Disable(ctx, svc); err != nil {
					return err
				}
			}
		}
	}
	if len(stopped) > 0 {
		say("stopped %s (the database cleanly: Galera saw it leave)", strings.Join(stopped, ", "))
	}
	if _, ok := nd.Services().(node.Disabler); ok {
		say("its services are disabled: a reboot does not start them")
	}
	aside := fmt.Sprintf("%s-removed-%s", galera.DataDir, time.Now().UTC().Format("20060102T150405Z"))
	moved, err := moveAside(ctx, nd, galera.DataDir, aside)
	if err != nil {
		return fmt.Errorf("moving its Galera data aside: %w", err)
	}
	if moved {
		res.Aside = append(res.Aside, aside)
		say("Galera data moved aside to %s (not deleted)", aside)
	}
	return nil
}

// Add brings node name into the cluster: after is the spec with it, before
// the spec without it; nodes reach after's nodes.
func Add(ctx context.Context, before, after *spec.Cluster, nodes map[string]node.Node, name string, o MembershipOptions) (MembershipResult, error) {
	o.defaults()
	start := time.Now()
	res := MembershipResult{Node: name, Op: "add"}
	say := func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		res.Actions = append(res.Actions, line)
		o.Say("[node add] %s: %s", name, line)
	}
	n, ok := after.Node(name)
	if !ok {
		return res, &UsageError{fmt.Sprintf("node add: no node %q in the new spec", name)}
	}
	rep := o.Status(ctx)
	if !rep.Healthy {
		return res, &plan.Refusal{
			Problem: fmt.Sprintf("node add %s refused: the layer is not healthy, and a new member must join a healthy cluster:\n  %s\nnothing was changed", name, strings.Join(rep.Problems, "\n  ")),
			Remedy:  "'hastack up' repairs what it can; add the node once 'hastack status' is healthy",
		}
	}
	nd := nodes[name]
	if nd == nil {
		return res, fmt.Errorf("node add %s: no way to reach it; nothing was changed", name)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err := nd.Run(rctx, node.Cmd{Argv: []string{"true"}})
	cancel()
	if err != nil {
		return res, &plan.Refusal{
			Problem: fmt.Sprintf("node add %s: it cannot be reached (%v); nothing was changed", name, err),
			Remedy:  "make the host reachable as the spec says (address, SSH), then run this again",
		}
	}
	if n.IsController() {
		holds, err := held(ctx, nd, n, status.Report{})
		if err != nil {
			return res, fmt.Errorf("node add %s: looking at what it holds: %w; nothing was changed", name, err)
		}
		if len(holds) > 0 && !o.Yes {
			return res, &plan.Refusal{
				Problem: fmt.Sprintf("%s still holds %s; nothing was changed", name, strings.Join(holds, ", ")),
				Remedy:  fmt.Sprintf("a new member starts empty and gets the cluster's state from the others; to move that data aside (not deleted), run 'hastack node add %s --yes'", name),
			}
		}
		m, err := cacheMoves(ctx, before, after)
		res.sayCache(m, err, say)
		if len(holds) > 0 {
			for _, svc := range []string{rabbitmq.ServiceName, galera.ServiceName} {
				if err := nd.Services().Stop(ctx, svc, 5*time.Minute); err != nil {
					return res, fmt.Errorf("node add %s: stopping %s: %w; the spec is unchanged", name, svc, err)
				}
			}
			stamp := time.Now().UTC().Format("20060102T150405Z")
			for _, dir := range []string{galera.DataDir, rabbitmq.MnesiaBase} {
				aside := fmt.Sprintf("%s-before-add-%s", dir, stamp)
				moved, err := moveAside(ctx, nd, dir, aside)
				if err != nil {
					return res, fmt.Errorf("node add %s: moving %s aside: %w; the spec is unchanged", name, dir, err)
				}
				if moved {
					res.Aside = append(res.Aside, aside)
					say("%s moved aside to %s (not deleted)", dir, aside)
				}
			}
		}
	}
	if err := o.Write(); err != nil {
		return res, fmt.Errorf("node add %s: writing the spec with it: %w", name, err)
	}
	say("added to the spec file")
	resume := func(err error) error {
		return fmt.Errorf("node add %s stopped: %w\nthe spec lists it now; once the cause is fixed, run 'hastack up' (and 'hastack recover rabbitmq' to grow the quorum queues onto it)", name, err)
	}
	ustart := time.Now()
	if err := o.Up(ctx); err != nil {
		return res, resume(fmt.Errorf("'up' with it: %w", err))
	}
	say("joined by 'up' in %s", time.Since(ustart).Round(time.Millisecond))
	if n.IsController() {
		if err := o.Queues(ctx); err != nil {
			return res, resume(fmt.Errorf("growing the quorum queues onto it: %w", err))
		}
		say("quorum queues have a replica on it")
	}
	if _, err := waitFor(ctx, o.HealthyBound, o.StatusAfter, func(r status.Report) (string, bool) { return "", r.Healthy }); err != nil {
		return res, resume(fmt.Errorf("status not healthy after the addition: %w", err))
	}
	if n.IsController() {
		if res.Donor = donor(ctx, nd, name); res.Donor != "" {
			say("database sent by %s", res.Donor)
		}
	}
	res.Took = time.Since(start)
	say("done, layer healthy, in %s", res.Took.Round(time.Millisecond))
	return res, nil
}
