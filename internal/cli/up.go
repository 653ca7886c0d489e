package cli

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/engine/chrony"
	"github.com/hastack/hastack/internal/engine/endpoint"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/memcached"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/sshnode"
)

// target connects to the cluster's nodes: over SSH for nodes with an ssh
// block, as lab nodes otherwise (transport.go).
func target(c *spec.Cluster, specPath string) (*plan.Target, *secrets.Store, error) {
	return reach(c, specPath, sshnode.Options{})
}

// labTarget is the cluster's nodes on the lab l.
func labTarget(c *spec.Cluster, specPath string, l *lab.Lab) (*plan.Target, *secrets.Store, error) {
	if got := l.State().Cluster; got != c.Metadata.Name {
		return nil, nil, fmt.Errorf("the lab on this machine is for cluster %q, not %q (from %s): run 'hastack lab down' and 'hastack lab up -f %s'", got, c.Metadata.Name, specPath, specPath)
	}
	nodes := map[string]node.Node{}
	for _, n := range c.Spec.Nodes {
		nd, err := l.Node(n.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("spec node %s: %w (was the lab made from another version of %s?)", n.Name, err, specPath)
		}
		nodes[n.Name] = nd
	}
	store, err := secrets.Open(secrets.PathFor(specPath), c.Metadata.Name)
	if err != nil {
		return nil, nil, err
	}
	return &plan.Target{Cluster: c, Nodes: nodes, Secrets: store, SharedClock: true}, store, nil
}

// Phases is the deploy, in order. Nodes on this machine (lab nodes, by
// either transport) use its packages; real hosts get theirs installed.
func phases(store *secrets.Store, bin endpoint.AgentBinary, onThisMachine bool) []plan.Phase {
	return []plan.Phase{
		deploy.Connect(),
		deploy.Facts(),
		deploy.Packages(onThisMachine),
		deploy.Secrets(store),
		deploy.Ports(),
		chrony.Phase(),
		memcached.Phase(),
		galera.Phase(),
		rabbitmq.TakeOverPhase(),
		rabbitmq.Phase(),
		endpoint.Phase(bin),
		verifyPhase(),
	}
}

func newUp(s Streams) *cobra.Command {
	var file string
	var dry bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Deploy the HA layer on every node and prove it healthy",
		Long: `Bring every node to what the spec says, in phases: connect, facts,
packages, secrets, chrony, memcached, galera, rabbitmq, endpoint, verify.
Each phase gathers facts first and acts only where needed, so a second 'up'
changes nothing, and 'up' after a failure or after engines were stopped
continues from what is in place. Every progress line names its phase and
host. 'up' says done only when 'status' finds everything healthy.`,
		Example: `  hastack up               # ./hastack.yaml
  hastack up --dry-run     # the per-host plan; changes nothing
  hastack up -f prod.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			return runUp(cmd.Context(), s, c, file, dry, nil)
		},
	}
	addSpecFlag(cmd, &file)
	cmd.Flags().BoolVar(&dry, "dry-run", false, "print the per-host plan and change nothing")
	return cmd
}

// runUp deploys c on the lab l, or on the lab the environment names when l
// is nil.
func runUp(ctx context.Context, s Streams, c *spec.Cluster, file string, dry bool, l *lab.Lab) error {
	var t *plan.Target
	var store *secrets.Store
	var err error
	if l != nil {
		t, store, err = labTarget(c, file, l)
	} else {
		t, store, err = target(c, file)
	}
	if err != nil {
		return err
	}
	bin, err := endpoint.LoadAgentBinary()
	if err != nil {
		return err
	}
	rep, err := deploy.Run(ctx, t, phases(store, bin, t.SharedClock), deploy.Options{DryRun: dry, Out: s.Out})
	if err != nil {
		return err
	}
	fmt.Fprintln(s.Out, rep.Summary(dry))
	if !dry {
		var line string
		for _, p := range rep.Phases {
			line += fmt.Sprintf(" %s=%s", p.Name, p.Duration.Round(1e6))
		}
		fmt.Fprintf(s.Out, "phase times:%s\n", line)
	}
	return nil
}

// newAgent is what hastack runs on the nodes themselves.
func newAgent(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:    "agent",
		Short:  "Agents hastack runs on the nodes (not for direct use)",
		Hidden: true,
	}
	var listen string
	health := &cobra.Command{
		Use:     "galera-health --listen ADDR:PORT",
		Short:   "Answer HAProxy's check: 200 only when the local Galera node may take writes",
		Example: `  hastack agent galera-health --listen 10.77.0.11:9200`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			fmt.Fprintf(s.Out, "galera health check on %s, asking %s\n", listen, galera.Socket)
			return galera.RunAgent(ctx, listen, galera.ProbeOptions{Socket: galera.Socket, User: "root"})
		},
	}
	health.Flags().StringVar(&listen, "listen", "", "address:port to serve the check on")
	_ = health.MarkFlagRequired("listen")
	cmd.AddCommand(health)
	return cmd
}
