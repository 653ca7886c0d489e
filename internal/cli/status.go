package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/sshnode"
	"github.com/hastack/hastack/internal/status"
)

func statusTarget(t *plan.Target) status.Target {
	return status.Target{Cluster: t.Cluster, Nodes: t.Nodes, Secrets: t.Secrets, ServiceUsers: serviceUsers(), SpecPath: t.SpecPath}
}

// verifyPhase is the last phase of 'up': the status must be healthy. A
// freshly started layer needs a few seconds to settle (keepalived elects
// the VIP holder, HAProxy's checks must pass 3 times), so Verify waits for
// that. A dry run only plans: it says whether the wait would be needed.
func verifyPhase() plan.Phase {
	return plan.Phase{Name: "verify",
		Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
			if !t.DryRun {
				return nil, nil
			}
			last := status.Collect(ctx, statusTarget(t))
			if last.Healthy {
				return nil, nil
			}
			return []plan.Step{{Host: "all", Action: "wait until every engine is healthy (now: " + last.Verdict + ")", Do: func(context.Context) error { return nil }}}, nil
		},
		Verify: func(ctx context.Context, t *plan.Target) error {
			var last status.Report
			err := plan.WaitFor(ctx, "every engine healthy", 90*time.Second, func(ctx context.Context) (bool, string) {
				last = status.Collect(ctx, statusTarget(t))
				if last.Healthy {
					return true, ""
				}
				return false, fmt.Sprintf("%s: %v", last.Verdict, last.Problems)
			})
			if err != nil {
				return err
			}
			t.Say("verify", "all", "healthy: galera %d synced, rabbitmq %d running, memcached %d, ntp %d nodes synchronised; writes go to %s", len(last.Services.Galera), len(last.Services.RabbitMQ), len(last.Services.Memcached), len(last.Services.NTP), last.Writer)
			return nil
		},
	}
}

func newStatus(s Streams) *cobra.Command {
	var file, output string
	var lf labFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "One view of every engine on every node: healthy, degraded or not serving",
		Long: `Probe every engine on every node in parallel, in the engines' own protocols:
Galera (SQL status variables), RabbitMQ (management API), memcached (stats),
time (chronyc on each node), and the database endpoint (HAProxy's stats, the
VIP, and a query through the VIP).

Exit 0 healthy, 1 degraded but serving, 2 not serving.`,
		Example: `  hastack status
  hastack status -o json | jq .services.galera`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "text" {
				return usagef("-o %q: use json or text", output)
			}
			c, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			// Status is a look at this moment: a host that does not
			// answer the first connection attempt is reported as such,
			// not retried until the probes' deadline.
			t, _, err := reach(c, file, lf.quiet(), sshnode.Options{ConnectAttempts: 1})
			if err != nil {
				return err
			}
			r := status.Collect(cmd.Context(), statusTarget(t))
			if output == "json" {
				enc := json.NewEncoder(s.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(r); err != nil {
					return err
				}
			} else if err := r.WriteText(s.Out, c.Metadata.Name); err != nil {
				return err
			}
			if code := r.ExitCode(); code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	addSpecFlag(cmd, &file)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	lf.add(cmd.Flags())
	return cmd
}
