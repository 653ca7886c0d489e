package cli

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/check"
)

func newCheck(s Streams) *cobra.Command {
	var file, output string
	var lf labFlags
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Measure every node against the spec's requirements: ok, warn or fail",
		Long: `Measure every node in parallel, before or after deploy, and judge each
finding ok, warn or fail, with the value measured and the limit applied:

  hardware        cores, memory, free disk where the engines keep data, NICs up
                  and addressed as the spec says (spec.requirements per role)
  virtualisation  a VM without nested hardware virtualisation warns on computes
  latency         ping between every two controllers, p50 and max (maxLatency)
  time            clock offset of every node against every controller
                  (maxClockOffset); after deploy, the NTP hierarchy and sync
  names           every node name resolves on every node to its management
                  address only
  ports           free before deploy, held by the right engine after
  quorum          Galera and RabbitMQ sizes; one Galera cluster name and state
                  UUID; one Erlang cookie (digests compared, never printed)
  exposure        memcached on UDP or off the management address, RabbitMQ's
                  guest user, database logins without a password

Checks that need a deployed engine say "not deployed yet" before 'hastack up'.
Exit 0 when nothing fails (warnings included), 1 otherwise.`,
		Example: `  hastack check
  hastack check -o json | jq '.[] | select(.status != "ok")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "text" {
				return usagef("-o %q: use json or text", output)
			}
			c, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			t, _, err := target(c, file, lf.quiet())
			if err != nil {
				return err
			}
			r := check.Run(cmd.Context(), check.Target{Cluster: t.Cluster, Nodes: t.Nodes, Secrets: t.Secrets, ServiceUsers: serviceUsers(), SpecPath: t.SpecPath}, check.Options{})
			if output == "json" {
				enc := json.NewEncoder(s.Out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false) // limits read ">= 3", not "\u003e= 3"
				if err := enc.Encode(r.Results); err != nil {
					return err
				}
			} else if err := r.WriteText(s.Out); err != nil {
				return err
			}
			if r.Failed() {
				return &ExitError{Code: ExitFailed}
			}
			return nil
		},
	}
	addSpecFlag(cmd, &file)
	lf.add(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}
