package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/maint"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/status"
)

// membership is what 'node add' and 'node remove' share: the spec file as
// it is and as it will be, a target for each, and the options that wire
// maint.Add and maint.Remove to them.
type membership struct {
	file          string
	before, after *spec.Cluster
	bt, at        *plan.Target
	newData       []byte
}

// parseChanged parses and validates the spec the change would write; an
// invalid one refuses the change, naming each problem and what to do.
func parseChanged(s Streams, file, what, remedy string, data []byte) (*spec.Cluster, error) {
	c, ps := spec.Parse(data)
	for _, w := range ps.Warnings() {
		fmt.Fprintf(s.Err, "%s %s: warning: %s\n", file, what, w)
	}
	if err := ps.Err(); err != nil {
		return nil, &ExitError{Code: ExitFailed, Err: fmt.Errorf("%s refused: the spec would not be valid: %w\nnothing was changed; %s", what, err, remedy)}
	}
	return c, nil
}

func (m *membership) options(s Streams, lo lab.Options, yes bool) maint.MembershipOptions {
	ro := restartOptions(s, m.after, m.file, lo, m.at, nil, nil)
	recoverRabbit := func(ctx context.Context, c *spec.Cluster, o rabbitmq.RecoverOptions) error {
		rt, store, err := target(c, m.file, lo)
		if err != nil {
			return err
		}
		_, err = deploy.Run(ctx, rt, []plan.Phase{deploy.Secrets(store), rabbitmq.RecoverPhase(o)}, deploy.Options{Out: io.Discard})
		return err
	}
	return maint.MembershipOptions{
		Yes:         yes,
		Status:      func(ctx context.Context) status.Report { return status.Collect(ctx, statusTarget(m.bt)) },
		StatusAfter: ro.Status,
		Forget: func(ctx context.Context, name string) error {
			return recoverRabbit(ctx, m.before, rabbitmq.RecoverOptions{Forget: []string{name}, Yes: true})
		},
		Write: func() error {
			info, err := os.Stat(m.file)
			if err != nil {
				return err
			}
			tmp := m.file + ".hastack-new"
			if err := os.WriteFile(tmp, m.newData, info.Mode().Perm()); err != nil {
				return err
			}
			return os.Rename(tmp, m.file)
		},
		Up:     ro.Up,
		Queues: func(ctx context.Context) error { return recoverRabbit(ctx, m.after, rabbitmq.RecoverOptions{}) },
		Say:    ro.Say,
	}
}

// report prints the result of an addition or removal.
func reportMembership(s Streams, output string, res maint.MembershipResult) error {
	if output == "json" {
		enc := json.NewEncoder(s.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	switch res.Op {
	case "add":
		fmt.Fprintf(s.Out, "node add: %s joined in %s", res.Node, res.Took.Round(time.Second))
		if res.Donor != "" {
			fmt.Fprintf(s.Out, " (database sent by %s)", res.Donor)
		}
	default:
		fmt.Fprintf(s.Out, "node remove: %s left the cluster and the spec in %s", res.Node, res.Took.Round(time.Second))
	}
	fmt.Fprintf(s.Out, "; memcached keys missed once: %d moved + %d gone of %d; status healthy\n", res.Cache.Moved, res.Cache.Gone, res.Cache.Keys)
	return nil
}

func membershipErr(err error) error {
	var ue *maint.UsageError
	if errors.As(err, &ue) {
		return usagef("%s", ue.Error())
	}
	return err
}

func nodeNames(c *spec.Cluster) string {
	var names []string
	for _, n := range c.Spec.Nodes {
		names = append(names, n.Name)
	}
	return strings.Join(names, ", ")
}

// lockFor takes the cluster lock for a membership change, or, in a drill
// that holds it already, nothing.
type lockFor func(ctx context.Context, t *plan.Target) (release func(), err error)

func commandLock(s Streams, what string, breakLock bool) lockFor {
	return func(ctx context.Context, t *plan.Target) (func(), error) {
		lock, err := clusterLock(ctx, s, t, what, breakLock)
		if err != nil {
			return nil, err
		}
		return func() { lock.Release(context.WithoutCancel(ctx)) }, nil
	}
}

// removeNode is 'hastack node remove': the spec without the node checked,
// then maint.Remove under the lock.
func removeNode(ctx context.Context, s Streams, file string, lo lab.Options, name string, lock lockFor) (maint.MembershipResult, error) {
	before, err := loadSpec(file, s.Err)
	if err != nil {
		return maint.MembershipResult{}, err
	}
	if _, ok := before.Node(name); !ok {
		return maint.MembershipResult{}, usagef("node remove: no node %q in the spec; the nodes are %s", name, nodeNames(before))
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return maint.MembershipResult{}, err
	}
	newData, err := spec.RemoveNode(data, name)
	if err != nil {
		return maint.MembershipResult{}, fmt.Errorf("node remove %s: editing %s: %w; nothing was changed", name, file, err)
	}
	after, err := parseChanged(s, file, "node remove "+name, fmt.Sprintf("fix %s first (then 'hastack up' applies it), and run this again", file), newData)
	if err != nil {
		return maint.MembershipResult{}, err
	}
	m := &membership{file: file, before: before, after: after, newData: newData}
	if m.bt, _, err = target(before, file, lo); err != nil {
		return maint.MembershipResult{}, err
	}
	if m.at, _, err = target(after, file, lo); err != nil {
		return maint.MembershipResult{}, err
	}
	release, err := lock(ctx, m.bt)
	if err != nil {
		return maint.MembershipResult{}, err
	}
	defer release()
	res, err := maint.Remove(ctx, before, after, m.bt.Nodes, name, m.options(s, lo, false))
	return res, membershipErr(err)
}

// addNode is 'hastack node add': n describes a node the spec does not
// have yet (nil: the spec has it). It reports whether there was nothing to
// do (the node is in the spec and the layer with it is healthy).
func addNode(ctx context.Context, s Streams, file string, lo lab.Options, name string, n *spec.Node, yes bool, lock lockFor) (maint.MembershipResult, bool, error) {
	var none maint.MembershipResult
	current, err := loadSpec(file, s.Err)
	if err != nil {
		return none, false, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return none, false, err
	}
	m := &membership{file: file}
	if n == nil {
		if _, ok := current.Node(name); !ok {
			return none, false, usagef("node add: %s is not in the spec: give its management address (--address), or write it into the spec first", name)
		}
		// Written by hand, or an addition that stopped half-way.
		m.after, m.newData = current, data
		old, err := spec.RemoveNode(data, name)
		if err != nil {
			return none, false, fmt.Errorf("node add %s: %w; nothing was changed", name, err)
		}
		// Its warnings are those of a cluster that will not be.
		var ps spec.Problems
		if m.before, ps = spec.Parse(old); ps.Err() != nil {
			return none, false, fmt.Errorf("node add %s: the spec without it is not valid: %w", name, ps.Err())
		}
		if m.at, _, err = target(m.after, file, lo); err != nil {
			return none, false, err
		}
		if rep := status.Collect(ctx, statusTarget(m.at)); rep.Healthy {
			return none, true, nil
		}
	} else {
		if m.newData, err = spec.AddNode(data, *n); err != nil {
			return none, false, fmt.Errorf("node add %s: editing %s: %w; nothing was changed", name, file, err)
		}
		if m.after, err = parseChanged(s, file, "node add "+name+" (the spec with it)", "check its name, --address and --network-address", m.newData); err != nil {
			return none, false, err
		}
		m.before = current
		if m.at, _, err = target(m.after, file, lo); err != nil {
			return none, false, fmt.Errorf("node add %s: %w; nothing was changed", name, err)
		}
	}
	if m.bt, _, err = target(m.before, file, lo); err != nil {
		return none, false, err
	}
	release, err := lock(ctx, m.bt)
	if err != nil {
		return none, false, err
	}
	defer release()
	res, err := maint.Add(ctx, m.before, m.after, m.at.Nodes, name, m.options(s, lo, yes))
	return res, false, membershipErr(err)
}

func newNodeRemove(s Streams) *cobra.Command {
	var file, output string
	var lf labFlags
	var breakLock bool
	cmd := &cobra.Command{
		Use:   "remove NODE",
		Short: "Take a node out of the cluster and out of the spec",
		Long: `Takes a node out for good: a controller leaves Galera, RabbitMQ and every
quorum queue, HAProxy's servers, keepalived's peers, the chrony hierarchy
and the services' memcached list; a compute node leaves the spec.

It refuses unless at least 2 controllers stay and every controller that
stays has a healthy database and broker, and when the spec without the node
would not be valid (2 controllers cannot run pause_minority: set
spec.rabbitmq.partitionHandling to autoheal first). Nothing is changed then.

For a controller, in order: the database writes and the VIP move off it; its
broker stops and is removed from the RabbitMQ cluster and every quorum
queue; its database stops cleanly (Galera sees it leave, so the others keep
their quorum); its other services stop (not its time service) and, under
systemd, are disabled, so that a reboot does not bring a removed member
back; its Galera data is moved aside (/var/lib/mysql-removed-<time>, never
deleted). A node that cannot be reached is taken for gone for good. Then the
spec file is written without the node, and 'up' renders the other nodes for
the new membership: Galera and RabbitMQ keep running (their peer lists are
read only at a start), HAProxy and keepalived restart one node at a time.
It says how many of the keys cached now the services will miss once
(python-memcached hashes keys mod the number of servers).`,
		Example: `  hastack node remove ctl3
  hastack node remove cmp7`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usagef("-o: %q: want text or json", output)
			}
			progress := s
			if output == "json" {
				progress.Out = s.Err
			}
			res, err := removeNode(cmd.Context(), progress, file, lf.quiet(), args[0], commandLock(progress, "node remove", breakLock))
			if err != nil {
				return err
			}
			return reportMembership(s, output, res)
		},
	}
	addSpecFlag(cmd, &file)
	lf.add(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json (the result, after the progress lines)")
	cmd.Flags().BoolVar(&breakLock, "break-lock", false, "remove another hastack's cluster lock first (only when that run is gone for good)")
	return cmd
}

func newNodeAdd(s Streams) *cobra.Command {
	var file, output, role, address string
	var netAddrs []string
	var lf labFlags
	var breakLock, yes bool
	cmd := &cobra.Command{
		Use:   "add NODE",
		Short: "Add a node to the spec and join it to the cluster",
		Long: `Adds a node: a controller joins Galera (a full transfer from a donor that is
not the writer), RabbitMQ and every quorum queue, and the other nodes get it
in HAProxy's servers, keepalived's peers, the chrony hierarchy and the
services' memcached list; a compute node follows the controllers' time.

The node is either written into the spec already (then only NODE is given),
or described by flags: --address (its management address), --role, and
--network-address NETWORK=ADDR for every other network whose interface
carries an address on the nodes of that role. Its interfaces are named as on
the first node of the same role.

It refuses when the spec with the node would not be valid (an address that
clashes, a name in use), when the layer is not healthy, when the node cannot
be reached, and when it still holds a database or a RabbitMQ database,
unless --yes says to move that aside (never deleted). Nothing is changed
then. Otherwise it writes the spec, runs 'up' (Galera and RabbitMQ keep
running on the others, whose peer lists are read only at a start; HAProxy
and keepalived restart one node at a time), grows every quorum queue onto
it, and waits until 'status' is healthy. It says how many of the keys cached
now the services will miss once (python-memcached hashes keys mod the number
of servers).`,
		Example: `  hastack node add ctl4 --address 10.77.0.14 --network-address provider=10.78.0.14
  hastack node add ctl4          # ctl4 is in the spec already
  hastack node add cmp2 --role compute --address 10.77.1.2 --network-address provider=10.78.1.2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usagef("-o: %q: want text or json", output)
			}
			progress := s
			if output == "json" {
				progress.Out = s.Err
			}
			name := args[0]
			current, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			var n *spec.Node
			if _, inSpec := current.Node(name); inSpec {
				if address != "" || len(netAddrs) > 0 || cmd.Flags().Changed("role") {
					return usagef("node add: %s is in the spec already; give only its name (the spec says its address and interfaces)", name)
				}
			} else {
				nn, err := newNodeFromFlags(current, name, role, address, netAddrs)
				if err != nil {
					return err
				}
				n = &nn
			}
			res, nothing, err := addNode(cmd.Context(), progress, file, lf.quiet(), name, n, yes, commandLock(progress, "node add", breakLock))
			if err != nil {
				return err
			}
			if nothing {
				fmt.Fprintf(s.Out, "node add: %s is in the spec and the layer with it is healthy; nothing to do\n", name)
				return nil
			}
			return reportMembership(s, output, res)
		},
	}
	addSpecFlag(cmd, &file)
	lf.add(cmd.Flags())
	cmd.Flags().StringVar(&address, "address", "", "the node's management address")
	cmd.Flags().StringVar(&role, "role", spec.RoleController, "controller or compute")
	cmd.Flags().StringArrayVar(&netAddrs, "network-address", nil, "NETWORK=ADDR: the node's address on another network (repeat)")
	cmd.Flags().BoolVar(&yes, "yes", false, "move aside (not delete) a database the node still holds")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json (the result, after the progress lines)")
	cmd.Flags().BoolVar(&breakLock, "break-lock", false, "remove another hastack's cluster lock first (only when that run is gone for good)")
	return cmd
}

// newNodeFromFlags describes a new node as the first node of its role is
// described: the same interfaces, with the addresses given.
func newNodeFromFlags(c *spec.Cluster, name, role, address string, netAddrs []string) (spec.Node, error) {
	if address == "" {
		return spec.Node{}, usagef("node add: %s is not in the spec: give its management address (--address), or write it into the spec first", name)
	}
	if _, err := netip.ParseAddr(address); err != nil {
		return spec.Node{}, usagef("node add: --address %q: not an IP address", address)
	}
	if role != spec.RoleController && role != spec.RoleCompute {
		return spec.Node{}, usagef("node add: --role %q: want %s or %s", role, spec.RoleController, spec.RoleCompute)
	}
	byNet := map[string]string{}
	for _, na := range netAddrs {
		net, addr, ok := strings.Cut(na, "=")
		if !ok || net == "" || addr == "" {
			return spec.Node{}, usagef("node add: --network-address %q: want NETWORK=ADDR", na)
		}
		byNet[net] = addr
	}
	var tmpl *spec.Node
	for _, n := range c.Spec.Nodes {
		if n.Role == role {
			tmpl = &n
			break
		}
	}
	if tmpl == nil {
		return spec.Node{}, usagef("node add: the spec has no %s node to take the interfaces from: write %s into the spec by hand, then run 'hastack node add %s'", role, name, name)
	}
	n := spec.Node{Name: name, Role: role, Address: address}
	var missing []string
	for _, ifc := range tmpl.Interfaces {
		out := spec.Interface{Name: ifc.Name, Network: ifc.Network}
		switch {
		case ifc.Network == spec.ManagementNetwork:
			if ifc.Address != "" {
				out.Address = address
			}
		case byNet[ifc.Network] != "":
			out.Address = byNet[ifc.Network]
			delete(byNet, ifc.Network)
		case ifc.Address != "":
			missing = append(missing, ifc.Network)
		}
		n.Interfaces = append(n.Interfaces, out)
	}
	if len(missing) > 0 {
		return spec.Node{}, usagef("node add: %s's interfaces on %s carry addresses: give %s's with --network-address %s=ADDR", tmpl.Name, strings.Join(missing, ", "), name, missing[0])
	}
	for net := range byNet {
		return spec.Node{}, usagef("node add: --network-address %s=...: %s has no interface on network %q", net, tmpl.Name, net)
	}
	return n, nil
}
