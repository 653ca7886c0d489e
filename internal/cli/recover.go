package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
)

func newRecover(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Bring back an engine that lost its cluster: galera",
		Long: `Explicit recovery, for the cases 'up' rightly refuses to decide alone.
Each recovery says what it found on every node, what it chose and why, and
writes its decision down before it acts, so that an interrupted recovery
resumes with the same choice.`,
		Example: `  hastack recover galera
  hastack recover galera --bootstrap-node ctl2 --yes`,
	}
	cmd.AddCommand(newRecoverGalera(s))
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
			var ctls []node.Node
			for _, n := range c.Controllers() {
				ctls = append(ctls, t.Node(n.Name))
			}
			lock, err := deploy.AcquireLock(ctx, ctls, deploy.Me("recover galera"), breakLock, func(format string, a ...any) {
				fmt.Fprintf(s.Out, "[lock] "+format+"\n", a...)
			})
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
