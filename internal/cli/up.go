package cli

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/engine/endpoint"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engines"
	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/sshnode"
)

// target connects to the cluster's nodes: over SSH for nodes with an ssh
// block, as lab nodes otherwise (transport.go).
func target(c *spec.Cluster, specPath string, lo lab.Options) (*plan.Target, *secrets.Store, error) {
	return reach(c, specPath, lo, sshnode.Options{})
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
	return &plan.Target{Cluster: c, Nodes: nodes, Secrets: store.Values(), SharedClock: true, SpecPath: absPath(specPath)}, store, nil
}

// Phases is the deploy, in order. Nodes on this machine (lab nodes, by
// either transport) use its packages; real hosts get theirs installed.
func phases(store *secrets.Store, bin endpoint.AgentBinary, onThisMachine bool) []plan.Phase {
	ps := []plan.Phase{
		deploy.Connect(),
		deploy.Facts(),
		deploy.Packages(onThisMachine, engines.PackagesFor),
		deploy.Secrets(store, extraSecrets()...),
		deploy.Ports(),
	}
	ps = append(ps, engines.Phases(engines.Inputs{Agent: bin})...)
	return append(ps, verifyPhase())
}

func newUp(s Streams) *cobra.Command {
	var file string
	var dry, breakLock bool
	var lf labFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Deploy the HA layer on every node and prove it healthy",
		Long: `Bring every node to what the spec says, in phases: connect, facts,
packages, secrets, chrony, memcached, galera, databases (the OpenStack
services' databases and users), rabbitmq, endpoint, verify.
Each phase gathers facts first and acts only where needed, so a second 'up'
changes nothing, and 'up' after a failure or after engines were stopped
continues from what is in place. Every progress line names its phase and
host. 'up' says done only when 'status' finds everything healthy.

While it works, 'up' holds a lock on every controller that answers
(` + deploy.LockPath + `): a second 'up' on the same cluster, from this
machine or another, is refused with the holder's name, pid, machine and
start time. --break-lock removes a lock whose holder is gone for good.`,
		Example: `  hastack up               # ./hastack.yaml
  hastack up --dry-run     # the per-host plan; changes nothing
  hastack up -f prod.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadSpec(file, s.Err)
			if err != nil {
				return err
			}
			return runUp(cmd.Context(), s, c, file, upOptions{dry: dry, breakLock: breakLock, lab: lf.quiet()}, nil)
		},
	}
	addSpecFlag(cmd, &file)
	cmd.Flags().BoolVar(&dry, "dry-run", false, "print the per-host plan and change nothing")
	lf.add(cmd.Flags())
	cmd.Flags().BoolVar(&breakLock, "break-lock", false, "remove another hastack's cluster lock first (only when that run is gone for good)")
	return cmd
}

// upOptions shape one 'up'.
type upOptions struct {
	dry       bool
	breakLock bool
	lab       lab.Options // where the lab is, for nodes without an ssh block
}

// runUp deploys c on the lab l, or on the lab the environment names when l
// is nil.
func runUp(ctx context.Context, s Streams, c *spec.Cluster, file string, o upOptions, l *lab.Lab) error {
	var t *plan.Target
	var store *secrets.Store
	var err error
	if l != nil {
		t, store, err = labTarget(c, file, l)
	} else {
		t, store, err = target(c, file, o.lab)
	}
	if err != nil {
		return err
	}
	bin, err := endpoint.LoadAgentBinary()
	if err != nil {
		return err
	}
	if !o.dry {
		// One 'up' at a time per cluster: a dry run only looks.
		var ctls []node.Node
		for _, n := range c.Controllers() {
			ctls = append(ctls, t.Node(n.Name))
		}
		lock, err := deploy.AcquireLock(ctx, ctls, deploy.Me("up"), o.breakLock, func(format string, a ...any) {
			fmt.Fprintf(s.Out, "[lock] "+format+"\n", a...)
		})
		if err != nil {
			return err
		}
		defer lock.Release(context.WithoutCancel(ctx))
	}
	rep, err := deploy.Run(ctx, t, phases(store, bin, t.SharedClock), deploy.Options{DryRun: o.dry, Out: s.Out})
	if err != nil {
		return err
	}
	fmt.Fprintln(s.Out, rep.Summary(o.dry))
	if !o.dry {
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
