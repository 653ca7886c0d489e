package cli

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/openstack"
	"github.com/hastack/hastack/internal/spec"
)

func newLint(s Streams) *cobra.Command {
	var file, release string
	cmd := &cobra.Command{
		Use:   "lint FILE...",
		Short: "Find HA mistakes in OpenStack service configs (nova.conf, ...)",
		Long: `Read existing OpenStack service configs and report their HA mistakes, one per
line as file:line: severity: message (fix: ...):

  - a single RabbitMQ host in transport_url;
  - options or sections the release does not read (oslo.config ignores an
    unknown option silently: rabbit_quorum_queues is a no-op), and removed or
    deprecated ones;
  - quorum and mirrored queue settings together;
  - a cache backend that hashes mod N, or pymemcache without the retry client;
  - memcached socket timeouts and dead-retry intervals that stall API calls;
  - heartbeat thresholds that give up on a dead broker only after a minute;
  - a database URL that points at one controller instead of the endpoint.

With -f, the server lists, the database endpoint and the queue type are
also compared with that cluster, and its spec.openstack.release applies.
A file that cannot be parsed, or is not a service config, is a finding too.
Exit 0 when no finding is an error, 1 otherwise, 2 on a usage error.`,
		Example: `  hastack lint /etc/nova/nova.conf /etc/neutron/neutron.conf
  hastack lint -f hastack.yaml /etc/*/*.conf
  hastack lint --release 2026.1 cinder.conf`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := openstack.LintOptions{Release: spec.DefaultOpenStackRelease}
			if cmd.Flags().Changed("file") {
				c, err := loadSpec(file, s.Err)
				if err != nil {
					return err
				}
				o.Cluster = c
				o.Release = c.Spec.OpenStack.Release
			}
			if release != "" {
				if !slices.Contains(spec.OpenStackReleases, release) {
					return usagef("--release %q: hastack knows %s", release, strings.Join(spec.OpenStackReleases, ", "))
				}
				o.Release = release
			}
			counts := map[openstack.Severity]int{}
			for _, path := range args {
				data, err := os.ReadFile(path)
				var fs []openstack.Finding
				if err != nil {
					fs = []openstack.Finding{{File: path, Severity: openstack.Error, Message: "cannot read it: " + err.Error()}}
				} else {
					fs = openstack.Lint(path, data, o)
				}
				for _, f := range fs {
					counts[f.Severity]++
					fmt.Fprintln(s.Out, f)
				}
			}
			against := ""
			if o.Cluster != nil {
				against = ", against cluster " + o.Cluster.Metadata.Name
			}
			fmt.Fprintf(s.Err, "hastack lint: %d file(s), OpenStack %s%s: %d error(s), %d warning(s)\n",
				len(args), o.Release, against, counts[openstack.Error], counts[openstack.Warning])
			if counts[openstack.Error] > 0 {
				return &ExitError{Code: ExitFailed}
			}
			return nil
		},
	}
	addSpecFlag(cmd, &file)
	cmd.Flags().StringVar(&release, "release", "", "OpenStack release whose option names apply ("+strings.Join(spec.OpenStackReleases, ", ")+"); default the spec's with -f, else "+spec.DefaultOpenStackRelease)
	return cmd
}
