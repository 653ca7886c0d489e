package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/engine/endpoint"
	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/maint"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/status"
)

func newRestart(s Streams) *cobra.Command {
	var file string
	var lf labFlags
	var breakLock bool
	var engineNames, nodeNames []string
	cmd := &cobra.Command{
		Use:   "restart",
		Short: "Rolling maintenance: restart the engines one node at a time, each drained of its clients first",
		Long: `Restart the engines of one node at a time, for maintenance (a new
package, a kernel, a configuration that needs a restart), without the
clients noticing more than a reconnect.

Before a controller's engines stop, its clients are moved off it: the
database writes (its HAProxy server in maintenance on every controller and
its sessions cut, so clients reconnect at once to the next Synced node), the
VIP (keepalived stopped gracefully), and RabbitMQ (maintenance mode:
connections closed, quorum queue leaders moved to the other members;
refused when a quorum queue would lose its majority). Then its services stop
gracefully, 'up' starts them again, what was drained is put back, and the
next node waits for 'status' healthy. The writer and the VIP holder go last,
so the writes and the VIP move once each.

It refuses to begin unless 'status' is healthy, and stops at the first node
that does not come back healthy, saying which nodes are done and how to go
on. Like 'up', it holds the cluster lock while it works.`,
		Example: `  hastack restart                          # every engine on every node
  hastack restart --engine rabbitmq        # only the brokers
  hastack restart --node ctl2 --engine galera,endpoint`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			t, _, err := target(c, file, lf.quiet())
			if err != nil {
				return err
			}
			lock, err := clusterLock(ctx, s, t, "restart", breakLock)
			if err != nil {
				return err
			}
			defer lock.Release(context.WithoutCancel(ctx))
			res, err := maint.Restart(ctx, c, t.Nodes, restartOptions(s, c, file, lf.quiet(), t, engineNames, nodeNames))
			var ue *maint.UsageError
			if errors.As(err, &ue) {
				return usagef("%s", ue.Error())
			}
			if err != nil {
				return err
			}
			var per []string
			for _, n := range res.Nodes {
				per = append(per, fmt.Sprintf("%s %s", n.Node, n.Took.Round(time.Second)))
			}
			fmt.Fprintf(s.Out, "restart: done in %s (%s); status healthy\n", res.Took.Round(time.Second), strings.Join(per, ", "))
			return nil
		},
	}
	addSpecFlag(cmd, &file)
	lf.add(cmd.Flags())
	cmd.Flags().StringSliceVar(&engineNames, "engine", nil, "restart only these engines ("+strings.Join(maint.EngineNames(), ", ")+")")
	cmd.Flags().StringSliceVar(&nodeNames, "node", nil, "restart only these nodes, in the order the restart chooses")
	cmd.Flags().BoolVar(&breakLock, "break-lock", false, "remove another hastack's cluster lock first (only when that run is gone for good)")
	return cmd
}

// restartOptions wire a rolling restart to this cluster: status, and 'up'
// (under the lock the caller holds) to start what it stopped.
func restartOptions(s Streams, c *spec.Cluster, file string, lo lab.Options, t *plan.Target, engineNames, nodeNames []string) maint.Options {
	return maint.Options{
		Engines: engineNames,
		Nodes:   nodeNames,
		Status:  func(ctx context.Context) status.Report { return status.Collect(ctx, statusTarget(t)) },
		Up: func(ctx context.Context) error {
			ut, store, err := target(c, file, lo)
			if err != nil {
				return err
			}
			bin, err := endpoint.LoadAgentBinary()
			if err != nil {
				return err
			}
			var out bytes.Buffer
			_, err = deploy.Run(ctx, ut, phases(store, bin, ut.SharedClock), deploy.Options{Out: &out})
			for _, line := range upActions(out.String()) {
				fmt.Fprintf(s.Out, "  up: %s\n", line)
			}
			return err
		},
		Say: func(format string, a ...any) {
			fmt.Fprintf(s.Out, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
		},
	}
}
