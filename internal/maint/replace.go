package maint

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/status"
)

// Replacing a controller: the host is gone for good and was rebuilt under
// the same name and address (or its state is lost), and it must rejoin as
// a new member. The other controllers keep the cluster meanwhile: the
// replacement is refused unless they hold a majority of Galera (Synced, in
// the Primary component) and of RabbitMQ without it.
//
// What it does, in order:
//   - stops the node's broker and database if they run;
//   - moves its Galera data aside (never deletes it), so it joins by a full
//     transfer (SST) from a donor that is not the writer (wsrep_sst_donor
//     in the rendered configuration puts the writer last);
//   - removes its broker from the RabbitMQ cluster and from every quorum
//     queue, and moves its RabbitMQ database aside ('hastack recover
//     rabbitmq --forget'), so it joins as a new member;
//   - runs 'up', which installs what the spec says on it and starts it;
//   - grows every quorum queue onto it ('hastack recover rabbitmq');
//   - waits until 'status' is healthy, and says which node was the donor.

// ReplaceOptions wire a replacement to the cluster.
type ReplaceOptions struct {
	// Yes confirms that the data the node still holds may be discarded
	// (moved aside) and copied again from the others.
	Yes bool
	// Status reports the layer as 'hastack status' does.
	Status func(ctx context.Context) status.Report
	// Forget removes a broker from the RabbitMQ cluster and its quorum
	// queues, and moves its database aside ('hastack recover rabbitmq
	// --forget NODE --yes').
	Forget func(ctx context.Context, name string) error
	// Up runs 'hastack up' (under the lock the caller holds).
	Up func(ctx context.Context) error
	// Queues restores the quorum queues' membership: a replica on every
	// running controller ('hastack recover rabbitmq').
	Queues func(ctx context.Context) error
	// Say receives progress lines.
	Say func(format string, a ...any)
	// HealthyBound bounds the wait for 'status' healthy at the end
	// (default 5 minutes: a full transfer of a big database takes a while,
	// and 'up' waits for it already).
	HealthyBound time.Duration
}

// ReplaceResult is what a replacement did.
type ReplaceResult struct {
	Node string `json:"node"`
	// Aside are the folders where the node's earlier data was moved.
	Aside []string `json:"aside,omitempty"`
	// Donor is the controller that sent the database (empty when unknown).
	Donor   string        `json:"donor,omitempty"`
	Took    time.Duration `json:"tookNs"`
	Actions []string      `json:"actions"`
}

// ReplaceCheck is what the replacement of one node found before it acted:
// whether the others hold the cluster, and what the node still holds.
type ReplaceCheck struct {
	// GaleraOthers and RabbitOthers count the other controllers whose
	// database is Synced in the Primary component, and whose broker runs
	// in the cluster.
	GaleraOthers, RabbitOthers int
	// Holds says what the node still holds or runs as a member.
	Holds []string
}

// checkReplace judges, from status and what the node holds, whether the
// replacement may go on. It only reads.
func checkReplace(c *spec.Cluster, rep status.Report, n spec.Node, holds []string, yes bool) (ReplaceCheck, error) {
	chk := ReplaceCheck{Holds: holds}
	ctls := c.Controllers()
	for _, g := range rep.Services.Galera {
		if g.Node != n.Name && g.Healthy {
			chk.GaleraOthers++
		}
	}
	for _, r := range rep.Services.RabbitMQ {
		if r.Node != n.Name && r.Healthy {
			chk.RabbitOthers++
		}
	}
	var short []string
	if 2*chk.GaleraOthers <= len(ctls) {
		short = append(short, fmt.Sprintf("Galera is Synced in the Primary component on %d of the other %d controllers", chk.GaleraOthers, len(ctls)-1))
	}
	if 2*chk.RabbitOthers <= len(ctls) {
		short = append(short, fmt.Sprintf("RabbitMQ runs in the cluster on %d of the other %d controllers", chk.RabbitOthers, len(ctls)-1))
	}
	if len(short) > 0 {
		return chk, &plan.Refusal{
			Problem: fmt.Sprintf("replace %s refused: the other controllers must hold a majority of the cluster while %s is rebuilt, and %s; nothing was changed", n.Name, n.Name, strings.Join(short, "; ")),
			Remedy:  "bring the cluster back first ('hastack up', or 'hastack recover galera' / 'hastack recover rabbitmq' when it has no majority), then replace the node",
		}
	}
	if len(holds) > 0 && !yes {
		return chk, &plan.Refusal{
			Problem: fmt.Sprintf("%s still holds %s; nothing was changed", n.Name, strings.Join(holds, ", ")),
			Remedy:  fmt.Sprintf("replacing it stops its broker and database, moves that data aside (not deleted) and copies the cluster's state to it again from the others; if that is what you want, run 'hastack node replace %s --yes'", n.Name),
		}
	}
	return chk, nil
}

// Replace rebuilds controller name as a new member of the cluster.
func Replace(ctx context.Context, c *spec.Cluster, nodes map[string]node.Node, name string, o ReplaceOptions) (ReplaceResult, error) {
	if o.HealthyBound == 0 {
		o.HealthyBound = 5 * time.Minute
	}
	if o.Say == nil {
		o.Say = func(string, ...any) {}
	}
	start := time.Now()
	res := ReplaceResult{Node: name}
	n, ok := c.Node(name)
	if !ok {
		var names []string
		for _, m := range c.Spec.Nodes {
			names = append(names, m.Name)
		}
		return res, &UsageError{fmt.Sprintf("node replace: no node %q in the spec; the nodes are %s", name, strings.Join(names, ", "))}
	}
	if !n.IsController() {
		return res, &UsageError{fmt.Sprintf("node replace: %s is a %s node: it holds no cluster state; rebuild it and run 'hastack up'", name, n.Role)}
	}
	say := func(format string, a ...any) {
		line := fmt.Sprintf(format, a...)
		res.Actions = append(res.Actions, line)
		o.Say("[replace] %s: %s", name, line)
	}
	nd := nodes[name]
	if nd == nil {
		return res, fmt.Errorf("replace %s: no way to reach it; nothing was changed", name)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err := nd.Run(rctx, node.Cmd{Argv: []string{"true"}})
	cancel()
	if err != nil {
		return res, &plan.Refusal{
			Problem: fmt.Sprintf("replace %s: it cannot be reached (%v); nothing was changed", name, err),
			Remedy:  "rebuild the host first (Debian, the engines' packages, reachable as the spec says), then run this again",
		}
	}
	rep := o.Status(ctx)
	holds, err := held(ctx, nd, n, rep)
	if err != nil {
		return res, fmt.Errorf("replace %s: looking at what it holds: %w; nothing was changed", name, err)
	}
	chk, err := checkReplace(c, rep, n, holds, o.Yes)
	if err != nil {
		return res, err
	}
	say("the others hold the cluster (Galera Synced on %d, RabbitMQ running on %d of the other %d controllers)", chk.GaleraOthers, chk.RabbitOthers, len(c.Controllers())-1)

	for _, svc := range []struct {
		name    string
		timeout time.Duration
	}{{rabbitmq.ServiceName, time.Minute}, {galera.ServiceName, 5 * time.Minute}} {
		st, err := nd.Services().Status(ctx, svc.name)
		if err != nil {
			return res, fmt.Errorf("replace %s: %w", name, err)
		}
		if st.Running {
			if err := nd.Services().Stop(ctx, svc.name, svc.timeout); err != nil {
				return res, fmt.Errorf("replace %s: stopping %s: %w", name, svc.name, err)
			}
			say("stopped %s", svc.name)
		}
	}
	// The peers must see the broker stopped before it can be forgotten.
	if _, err := waitFor(ctx, time.Minute, o.Status, func(r status.Report) (string, bool) {
		for _, e := range r.Services.RabbitMQ {
			if e.Node == name && e.Running {
				return "", false
			}
		}
		return "", true
	}); err != nil {
		return res, resume(name, fmt.Errorf("its peers still see its broker running: %w", err))
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	aside := fmt.Sprintf("%s-replaced-%s", galera.DataDir, stamp)
	moved, err := moveAside(ctx, nd, galera.DataDir, aside)
	if err != nil {
		return res, resume(name, fmt.Errorf("moving its Galera data aside: %w", err))
	}
	if moved {
		res.Aside = append(res.Aside, aside)
		say("Galera data moved aside to %s: it joins by a full transfer (SST)", aside)
	}
	if err := o.Forget(ctx, name); err != nil {
		return res, resume(name, fmt.Errorf("removing it from the RabbitMQ cluster: %w", err))
	}
	say("removed from the RabbitMQ cluster and its quorum queues; its RabbitMQ database moved aside under %s", rabbitmq.MnesiaBase)
	ustart := time.Now()
	if err := o.Up(ctx); err != nil {
		return res, resume(name, fmt.Errorf("'up' starting it as a new member: %w", err))
	}
	say("started as a new member by 'up' in %s", time.Since(ustart).Round(time.Millisecond))
	if err := o.Queues(ctx); err != nil {
		return res, resume(name, fmt.Errorf("growing the quorum queues onto it: %w", err))
	}
	say("quorum queues have a replica on it")
	if _, err := waitFor(ctx, o.HealthyBound, o.Status, func(r status.Report) (string, bool) { return "", r.Healthy }); err != nil {
		return res, resume(name, fmt.Errorf("status not healthy after the replacement: %w", err))
	}
	if res.Donor = donor(ctx, nd, name); res.Donor != "" {
		say("database sent by %s", res.Donor)
	}
	res.Took = time.Since(start)
	say("done, layer healthy, in %s", res.Took.Round(time.Millisecond))
	return res, nil
}

// resume says how to go on after a replacement stopped half-way: running it
// again is safe (what is already aside stays there, a forgotten broker is
// not forgotten twice).
func resume(name string, err error) error {
	return fmt.Errorf("replace %s stopped: %w\nonce the cause is fixed, run 'hastack node replace %s --yes' again: it goes on from what is in place", name, err, name)
}

// held lists what the node still holds or runs as a member.
func held(ctx context.Context, nd node.Node, n spec.Node, rep status.Report) ([]string, error) {
	var out []string
	for _, g := range rep.Services.Galera {
		if g.Node == n.Name && g.Healthy {
			out = append(out, "a Synced member of the Galera cluster")
		}
	}
	for _, r := range rep.Services.RabbitMQ {
		if r.Node == n.Name && r.Healthy {
			out = append(out, "a running member of the RabbitMQ cluster")
		}
	}
	for _, p := range []struct{ path, what string }{
		{galera.DataDir + "/grastate.dat", "Galera data (" + galera.DataDir + ")"},
		{rabbitmq.MnesiaBase + "/" + rabbitmq.NodeName(n), "a RabbitMQ database (" + rabbitmq.MnesiaBase + "/" + rabbitmq.NodeName(n) + ")"},
	} {
		res, err := nd.Run(ctx, node.Cmd{Argv: []string{"test", "-e", p.path}})
		var ce *node.CommandError
		switch {
		case err == nil:
			out = append(out, p.what)
		case errors.As(err, &ce) && res.ExitCode == 1:
		default:
			return nil, err
		}
	}
	return out, nil
}

// moveAside moves what folder dir holds into a new folder aside (on the
// same file system: a rename, not a copy), leaving dir empty with its owner
// and mode. It reports whether there was anything to move.
func moveAside(ctx context.Context, nd node.Node, dir, aside string) (bool, error) {
	res, err := nd.Run(ctx, node.Cmd{Argv: []string{"sh", "-c", `[ -d "$1" ] || exit 0; [ -n "$(ls -A "$1")" ] || exit 0; mkdir "$2" && find "$1" -mindepth 1 -maxdepth 1 -exec mv -t "$2" {} + && echo moved`, "sh", dir, aside}})
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(res.Stdout)) == "moved", nil
}

// donor names the controller that sent name its state, from name's own
// database log: Galera logs every state transfer request with the donor it
// selected ("Member 2.0 (ctl2) requested state transfer from 'ctl3,ctl1,'.
// Selected 1.0 (ctl3)(SYNCED) as donor."). The last one for name counts.
func donor(ctx context.Context, nd node.Node, name string) string {
	_, tail := plan.ServiceLog(ctx, nd, galera.ServiceName, 5000)
	var last string
	for _, m := range donorLine.FindAllStringSubmatch(tail, -1) {
		if m[1] == name {
			last = m[2]
		}
	}
	return last
}

var donorLine = regexp.MustCompile(`Member \S+ \(([^)]+)\) requested state transfer from '[^']*'\. Selected \S+ \(([^)]+)\)`)
