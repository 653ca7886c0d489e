package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/openstack"
	"github.com/hastack/hastack/internal/render"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/serve"
	"github.com/hastack/hastack/internal/spec"
)

func addSpecFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVarP(p, "file", "f", defaultSpec, "cluster spec")
}

// loadSpec loads and validates a spec, printing its warnings. An invalid
// spec is an ExitError with code 1 that lists every problem.
func loadSpec(path string, errOut io.Writer) (*spec.Cluster, error) {
	c, ps, err := spec.Load(path)
	if err != nil {
		return nil, &ExitError{Code: ExitFailed, Err: err}
	}
	for _, w := range ps.Warnings() {
		fmt.Fprintf(errOut, "%s: warning: %s\n", path, w)
	}
	if err := ps.Err(); err != nil {
		return nil, &ExitError{Code: ExitFailed, Err: fmt.Errorf("%s: %w", path, err)}
	}
	return c, nil
}

func newInit(s Streams) *cobra.Command {
	var out string
	var o spec.ExampleOptions
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Write an annotated example cluster spec",
		Long: `Write an annotated example spec that validates: controllers and computes
with a management and a provider network, the database endpoint VIP, and
every engine setting with its default and the reason for it.`,
		Example: `  hastack init                       # ./hastack.yaml, 3 controllers, 1 compute
  hastack init -o prod.yaml --controllers 3 --computes 20
  hastack init -o - | less           # print it`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := spec.ExampleYAML(o)
			if err != nil {
				return usagef("%v", err)
			}
			if out == "-" {
				_, err := s.Out.Write(data)
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if errors.Is(err, os.ErrExist) {
				return &ExitError{Code: ExitFailed, Err: fmt.Errorf("%s already exists; hastack init does not overwrite a spec (remove it or use -o another.yaml)", out)}
			}
			if err != nil {
				return err
			}
			if _, err := f.Write(data); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "wrote %s (%d controllers, %d computes); next: hastack validate -f %s\n", out, o.Controllers, o.Computes, out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", defaultSpec, "file to write, - for standard output")
	cmd.Flags().StringVar(&o.Name, "name", "lab", "cluster name")
	cmd.Flags().IntVar(&o.Controllers, "controllers", 3, "number of controllers (3 tolerate the loss of 1)")
	cmd.Flags().IntVar(&o.Computes, "computes", 1, "number of compute nodes")
	cmd.Flags().BoolVar(&o.Lab, "lab", false, "size caches and hardware minimums for the lab on one machine")
	return cmd
}

func newValidate(s Streams) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a cluster spec and report every problem at once",
		Long: `Check a cluster spec: unknown fields, wrong types, duplicate names or
addresses, and topologies that cannot work are errors; topologies that work
with consequences (2 controllers, an even number of Galera nodes...) are
warnings. Exit 0 when valid (warnings printed), 1 when invalid, 2 on a usage
error.`,
		Example: `  hastack validate
  hastack validate -f prod.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "%s: valid: cluster %s, %d controllers, %d computes\n", file, c.Metadata.Name, len(c.Controllers()), len(c.Computes()))
			return nil
		},
	}
	addSpecFlag(cmd, &file)
	return cmd
}

func newRender(s Streams) *cobra.Command {
	var file, out string
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Write every file each node needs, laid out as that node's filesystem",
		Long: `Render the configuration of every engine for every node into
DIR/<node>/<path> (DIR/ctl1/etc/chrony/chrony.conf, ...), and the settings
each OpenStack service needs from this layer into DIR/openstack/<service>.conf
(nova, cinder, neutron, ceilometer, keystone), and Prometheus alert rules
for the metrics of 'hastack serve' into DIR/prometheus/hastack-alerts.yml. Secrets are
generated on first need into the secrets file beside the spec (mode 0600)
and appear only in the files that need them, also mode 0600.`,
		Example: `  hastack render --out /tmp/rendered
  hastack render -f prod.yaml --out rendered && ls rendered/ctl1/etc`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out DIR is required")
			}
			c, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			store, err := secrets.Open(secrets.PathFor(file), c.Metadata.Name)
			if err != nil {
				return err
			}
			nodes, err := render.Cluster(c, store)
			if err != nil {
				return err
			}
			services, err := openstack.Render(c, store)
			if err != nil {
				return err
			}
			if err := store.Save(); err != nil {
				return err
			}
			if err := render.WriteTree(out, nodes); err != nil {
				return err
			}
			if err := openstack.WriteFiles(out, services); err != nil {
				return err
			}
			rules := serve.Rules(c)
			if err := openstack.WriteFiles(out, []engine.File{rules}); err != nil {
				return err
			}
			count := len(services) + 1
			for _, nf := range nodes {
				count += len(nf.All())
			}
			fmt.Fprintf(s.Out, "rendered %d files for %d nodes into %s (secrets: %s)\n", count, len(nodes), filepath.Clean(out), store.Path())
			return nil
		},
	}
	addSpecFlag(cmd, &file)
	cmd.Flags().StringVar(&out, "out", "", "directory to write into (required)")
	return cmd
}
