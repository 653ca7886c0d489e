package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
)

func newRecover(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Bring back an engine that lost its cluster: galera, rabbitmq",
		Long: `Explicit recovery, for the cases 'up' rightly refuses to decide alone.
Each recovery says what it found on every node, what it chose and why, and
writes its decision down before it acts, so that an interrupted recovery
resumes with the same choice.`,
		Example: `  hastack recover galera
  hastack recover galera --bootstrap-node ctl2 --yes
  hastack recover rabbitmq
  hastack recover rabbitmq --forget ctl3`,
	}
	cmd.AddCommand(newRecoverGalera(s), newRecoverRabbitMQ(s))
	return cmd
}

func newRecoverGalera(s Streams) *cobra.Command {
	var file string
	var o galera.Options
	var lf labFlags
	var breakLock bool
	cmd := &cobra.Command{
		Use:   "galera",
		Short: "Start a Galera cluster that has no Primary component again, from the most advanced node",
		Long: `For a Galera cluster with no Primary component:

  - every node stopped (a power cut, every node killed): each node's position
    is read from grastate.dat, or recovered from InnoDB (mariadbd
    --wsrep-recover, rolling back prepared XA transactions it reports) where
    the node crashed. Every node must share one cluster history; a node with
    no state, wiped data or a foreign history is never a candidate. The most
    advanced node is chosen (ties: the first in spec order), the decision is
    written to <spec>.galera-recovery.json here and to
    ` + galera.NodeRecordPath + ` on the chosen node, and only then is it
    bootstrapped; the others rejoin (IST where the cache allows).
  - survivors without a Primary component (the other controllers gone): the
    most advanced survivor is promoted (pc.bootstrap), only once every other
    controller is confirmed down: stopped, or, when it cannot be reached,
    confirmed gone for good by --yes.

It refuses when a position cannot be established, unless a node is named with
--bootstrap-node; a named node behind another, or beside an unknown one, needs
--yes, and the refusal says what would be lost. On a cluster with a Primary
component it only starts the stopped nodes (nothing to do when all run).

'up' runs the same decision for a fully stopped cluster, with the same
refusals.`,
		Example: `  hastack recover galera
  hastack recover galera --bootstrap-node ctl2 --yes   # ctl1 and ctl3 are gone for good`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			o.Recover = true
			t, store, err := target(c, file, lf.quiet())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			lock, err := clusterLock(ctx, s, t, "recover galera", breakLock)
			if err != nil {
				return err
			}
			defer lock.Release(context.WithoutCancel(ctx))
			start := time.Now()
			// The secrets phase first: a cluster that never ran gets its
			// secrets as 'up' would give them; one with data and no secrets
			// file is refused there.
			rep, err := deploy.Run(ctx, t, []plan.Phase{deploy.Secrets(store), galera.RecoverPhase(o)}, deploy.Options{Out: s.Out})
			if err != nil {
				return err
			}
			if rep.Steps == 0 {
				fmt.Fprintf(s.Out, "recover galera: nothing to do: a Primary component runs on every controller (%s)\n", time.Since(start).Round(time.Millisecond))
				return nil
			}
			fmt.Fprintf(s.Out, "recover galera: done in %s; run 'hastack status' to see the whole layer\n", time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	addSpecFlag(cmd, &file)
	lf.add(cmd.Flags())
	cmd.Flags().StringVar(&o.BootstrapNode, "bootstrap-node", "", "bootstrap from this controller instead of the most advanced one")
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "confirm that unreachable controllers are gone for good, and accept what a named node lacks")
	cmd.Flags().BoolVar(&breakLock, "break-lock", false, "remove another hastack's cluster lock first (only when that run is gone for good)")
	return cmd
}

// clusterLock takes the cluster lock on the controllers for a recovery.
func clusterLock(ctx context.Context, s Streams, t *plan.Target, what string, breakLock bool) (*deploy.Lock, error) {
	var ctls []node.Node
	for _, n := range t.Cluster.Controllers() {
		ctls = append(ctls, t.Node(n.Name))
	}
	return deploy.AcquireLock(ctx, ctls, deploy.Me(what), breakLock, func(format string, a ...any) {
		fmt.Fprintf(s.Out, "[lock] "+format+"\n", a...)
	})
}

func newRecoverRabbitMQ(s Streams) *cobra.Command {
	var file string
	var o rabbitmq.RecoverOptions
	var lf labFlags
	var breakLock bool
	cmd := &cobra.Command{
		Use:   "rabbitmq",
		Short: "Heal a RabbitMQ partition, start a fully stopped cluster, forget a lost member",
		Long: `For a RabbitMQ cluster that does not come back by itself:

  - a partition that did not heal (a controller hung past net_ticktime, then
    resumed): the minority side's application is restarted so that it
    rejoins the majority, as 'up' does (the same code): with quorum queues,
    a clear minority and every broker running; otherwise refused, naming
    the minority side.
  - every broker stopped: the member that stopped last (it saw every other
    stop: its nodes_running_at_shutdown lists only itself) starts first,
    alone, and the others load from it; members that stopped together start
    together. When every member that can start waits for one that cannot
    be reached (or was rebuilt blank), it refuses: that one stopped last.
    With --yes (it is gone for good), the last of the others to stop is
    forced to boot without it (rabbitmqctl force_boot), and it says so;
    --boot-node NODE names another node to start first (--yes when it must
    be forced).
  - a controller that cannot be reached, the others running: they are left
    running, stopped ones started; --forget NODE removes a member gone for
    good (rabbitmqctl forget_cluster_node), refused while its broker
    answers (a hung broker only with --yes); a reachable forgotten node's
    database is moved aside, so the next 'recover rabbitmq' (or 'up')
    starts it as a new member.
  - after each: every quorum queue shrunk off forgotten members and grown
    onto every running controller that lacks a replica (rabbitmq-queues
    shrink/grow); done once every quorum queue has a Raft leader.

On a healthy cluster with complete quorum queues it has nothing to do.`,
		Example: `  hastack recover rabbitmq
  hastack recover rabbitmq --yes                 # the node that stopped last is gone for good
  hastack recover rabbitmq --boot-node ctl2 --yes
  hastack recover rabbitmq --forget ctl3         # ctl3 is gone for good`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			t, store, err := target(c, file, lf.quiet())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			lock, err := clusterLock(ctx, s, t, "recover rabbitmq", breakLock)
			if err != nil {
				return err
			}
			defer lock.Release(context.WithoutCancel(ctx))
			start := time.Now()
			rep, err := deploy.Run(ctx, t, []plan.Phase{deploy.Secrets(store), rabbitmq.RecoverPhase(o)}, deploy.Options{Out: s.Out})
			if err != nil {
				return err
			}
			if rep.Steps == 0 {
				fmt.Fprintf(s.Out, "recover rabbitmq: nothing to do: every controller's broker runs in one cluster, no partition, every quorum queue complete (%s)\n", time.Since(start).Round(time.Millisecond))
				return nil
			}
			fmt.Fprintf(s.Out, "recover rabbitmq: done in %s; run 'hastack status' to see the whole layer\n", time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	addSpecFlag(cmd, &file)
	lf.add(cmd.Flags())
	cmd.Flags().BoolVar(&o.Yes, "yes", false, "confirm that the controllers that cannot be reached (or were rebuilt blank) are gone for good: force the last of the others to boot without them")
	cmd.Flags().StringVar(&o.BootNode, "boot-node", "", "after a full stop, start this controller first (forced to boot without its peers when it must be; then --yes)")
	cmd.Flags().StringSliceVar(&o.Forget, "forget", nil, "remove this member, gone for good, from the cluster and its quorum queues (repeatable)")
	cmd.Flags().BoolVar(&breakLock, "break-lock", false, "remove another hastack's cluster lock first (only when that run is gone for good)")
	return cmd
}
