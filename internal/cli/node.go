package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/maint"
	"github.com/hastack/hastack/internal/plan"
)

func newNode(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Change the cluster's membership: add, remove, or replace a controller that is gone for good",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newNodeAdd(s), newNodeRemove(s), newNodeReplace(s))
	return cmd
}

func newNodeReplace(s Streams) *cobra.Command {
	var file, output string
	var lf labFlags
	var breakLock, yes bool
	cmd := &cobra.Command{
		Use:   "replace NODE",
		Short: "Rebuild a controller under the same name and address, and rejoin it as a new member",
		Long: `For a controller that is gone for good (a dead disk, a lost host) and was
rebuilt under the same name and address, or whose state is lost: it rejoins
the cluster as a new member, its database copied again from the others.

The other controllers keep the cluster meanwhile: it refuses unless they
hold a majority of Galera (Synced, in the Primary component) and of
RabbitMQ without the node. It refuses a node it cannot reach, and one that
still holds data or runs as a member unless --yes says to discard it.

Then it stops the node's broker and database if they run; moves its Galera
data aside (to /var/lib/mysql-replaced-<time>, never deleted), so that it
joins by a full transfer (SST) from a donor that is not the writer; removes
its broker from the RabbitMQ cluster and every quorum queue and moves its
RabbitMQ database aside ('hastack recover rabbitmq --forget'); runs 'up',
which installs what the spec says and starts it as a new member; grows every
quorum queue onto it; and waits until 'status' is healthy. It says which
controller sent the database, and how long it took. Like 'up', it holds the
cluster lock while it works; stopped half-way, run it again.`,
		Example: `  hastack node replace ctl2           # ctl2 was rebuilt blank
  hastack node replace ctl2 --yes     # ctl2 still holds data: discard it`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usagef("-o: %q: want text or json", output)
			}
			progress := s
			if output == "json" {
				// The progress lines go to stderr; stdout is the result.
				progress.Out = s.Err
			}
			c, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			t, _, err := target(c, file, lf.quiet())
			if err != nil {
				return err
			}
			lock, err := clusterLock(ctx, progress, t, "node replace", breakLock)
			if err != nil {
				return err
			}
			defer lock.Release(context.WithoutCancel(ctx))
			ro := restartOptions(progress, c, file, lf.quiet(), t, nil, nil)
			recoverRabbit := func(ctx context.Context, o rabbitmq.RecoverOptions) error {
				rt, store, err := target(c, file, lf.quiet())
				if err != nil {
					return err
				}
				_, err = deploy.Run(ctx, rt, []plan.Phase{deploy.Secrets(store), rabbitmq.RecoverPhase(o)}, deploy.Options{Out: io.Discard})
				return err
			}
			res, err := maint.Replace(ctx, c, t.Nodes, args[0], maint.ReplaceOptions{
				Yes:    yes,
				Status: ro.Status,
				Up:     ro.Up,
				Say:    ro.Say,
				Forget: func(ctx context.Context, name string) error {
					return recoverRabbit(ctx, rabbitmq.RecoverOptions{Forget: []string{name}, Yes: true})
				},
				Queues: func(ctx context.Context) error { return recoverRabbit(ctx, rabbitmq.RecoverOptions{}) },
			})
			var ue *maint.UsageError
			if errors.As(err, &ue) {
				return usagef("%s", ue.Error())
			}
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(s.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			donor := "unknown"
			if res.Donor != "" {
				donor = res.Donor
			}
			fmt.Fprintf(s.Out, "node replace: %s rejoined as a new member in %s (database sent by %s); status healthy\n", res.Node, res.Took.Round(time.Second), donor)
			return nil
		},
	}
	addSpecFlag(cmd, &file)
	lf.add(cmd.Flags())
	cmd.Flags().BoolVar(&yes, "yes", false, "discard (move aside) the data the node still holds")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json (the result, after the progress lines)")
	cmd.Flags().BoolVar(&breakLock, "break-lock", false, "remove another hastack's cluster lock first (only when that run is gone for good)")
	return cmd
}
