package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/deploy"
	hadrill "github.com/hastack/hastack/internal/drill"
	"github.com/hastack/hastack/internal/engine/endpoint"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/maint"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/openstack"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/sshnode"
	"github.com/hastack/hastack/internal/status"
)

func newDrill(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Break a controller the way real ones fail, and report what the clients saw",
		Long: `A drill runs client workloads through the layer (database through the VIP,
messages with publisher confirms), breaks one node the way real controllers
fail (a killed engine, a hung host, a cut cable, a power loss), heals it,
waits until status is healthy and verifies that no acknowledged write or
confirmed message was lost. It reports the outage window the clients saw,
latency and throughput per phase, errors by kind, and the loss accounting.

The targets are the spec's (spec.drill.targets; 'hastack init' shows the
defaults). Exit 0 every target held, 1 a target missed (each named), 2
refused (nothing was broken: another drill or an 'up' running, status not
healthy, the OpenStack client libraries missing without --skip-openstack,
cut-node on hosts that are not a lab...), 3 data lost (with the evidence).`,
	}
	cmd.AddCommand(newDrillList(s), newDrillRun(s), newDrillReport(s))
	return cmd
}

func newDrillList(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "The scenarios a drill can run",
		Long:    "Every scenario a drill can run, with what it breaks and how it puts it back.",
		Example: `  hastack drill list`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			writeScenarios(s.Out)
			return nil
		},
	}
}

func writeScenarios(w interface{ Write([]byte) (int, error) }) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tWHAT IT DOES")
	for _, sc := range hadrill.Scenarios() {
		fmt.Fprintf(tw, "%s\t%s\n", sc.Name, sc.Description)
	}
	tw.Flush()
}

// newDrillReport renders recorded timelines (timelines.json of --report)
// again: the report is a pure function of them.
func newDrillReport(s Streams) *cobra.Command {
	var output, dir string
	cmd := &cobra.Command{
		Use:     "report TIMELINES.json",
		Short:   "Report again from the timelines a drill recorded (--report DIR/timelines.json)",
		Example: "  hastack drill report out/timelines.json -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "" && output != "json" && output != "text" {
				return usagef("-o %q: use json or text", output)
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var recs []hadrill.RunRecord
			if err := json.Unmarshal(data, &recs); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			var rep hadrill.Report
			seen := map[string]int{}
			repeated := false
			for _, r := range recs {
				seen[r.Scenario]++
				repeated = repeated || seen[r.Scenario] > 1
				// Judged by the targets the run was held to (recorded),
				// else the defaults.
				tg := hadrill.DefaultTargets()
				if r.Targets != nil {
					tg = *r.Targets
				}
				sr := hadrill.Build(r, tg)
				sr.Run = seen[r.Scenario]
				rep.Scenarios = append(rep.Scenarios, sr)
			}
			if repeated {
				rep.Summary = rep.Summarize()
			} else {
				for i := range rep.Scenarios {
					rep.Scenarios[i].Run = 0
				}
			}
			if dir != "" {
				if err := writeDrillReport(dir, rep, recs); err != nil {
					return err
				}
			}
			if output == "json" {
				err = rep.WriteJSON(s.Out)
			} else {
				err = rep.WriteText(s.Out)
				if err == nil && repeated {
					fmt.Fprintln(s.Out)
					err = rep.WriteSummary(s.Out)
				}
			}
			if err != nil {
				return err
			}
			if code := rep.ExitCode(); code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	cmd.Flags().StringVar(&dir, "report", "", "write the HTML report into this folder too")
	return cmd
}

type drillFlags struct {
	file, node, output, reportDir string
	hold, baseline                time.Duration
	repeat                        int
	all, yes, clientDefaults      bool
	skipOpenStack                 bool
}

func newDrillRun(s Streams) *cobra.Command {
	f := &drillFlags{}
	cmd := &cobra.Command{
		Use:   "run SCENARIO... | --all",
		Short: "Run scenarios: baseline, fault held, heal, recovery to healthy, verification",
		Example: `  hastack drill run kill-db
  hastack drill run freeze-node cut-node --hold 10s -o json
  hastack drill run --all --repeat 3 --report out/`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDrill(cmd.Context(), s, f, args)
		},
	}
	addSpecFlag(cmd, &f.file)
	cmd.Flags().StringVar(&f.node, "node", "", "the node to break (default: the controller that holds the VIP and takes the writes; for clock-stop the first compute node)")
	cmd.Flags().DurationVar(&f.hold, "hold", 30*time.Second, "how long the fault is held (at most 10m)")
	cmd.Flags().DurationVar(&f.baseline, "baseline", 10*time.Second, "how long the workloads run before the fault (at least 10s)")
	cmd.Flags().IntVar(&f.repeat, "repeat", 1, "run every scenario this many times")
	cmd.Flags().StringVarP(&f.output, "output", "o", "", "output format: json")
	cmd.Flags().StringVar(&f.reportDir, "report", "", "write an HTML report (index.html) and the raw timelines (timelines.json) into this folder")
	cmd.Flags().BoolVar(&f.all, "all", false, "run every scenario")
	cmd.Flags().BoolVar(&f.yes, "yes", false, "on hosts that are not a lab: break them anyway")
	cmd.Flags().BoolVar(&f.skipOpenStack, "skip-openstack", false, "run without the rpc and cache workloads (the OpenStack client libraries): they are reported not measured; without it a drill refuses when the libraries do not load")
	cmd.Flags().BoolVar(&f.clientDefaults, "client-defaults", false, "configure the rpc and cache workloads with the libraries' defaults (only the spec's endpoints, the same queue type and cache backend) instead of the rendered service files, for comparison")
	return cmd
}

func runDrill(ctx context.Context, s Streams, f *drillFlags, args []string) error {
	var names []string
	switch {
	case f.all && len(args) > 0:
		return usagef("give scenarios or --all, not both")
	case f.all:
		for _, n := range hadrill.Names() {
			if sc, _ := hadrill.Find(n); sc.Explicit != "" {
				fmt.Fprintf(s.Err, "%s: left out of --all (name it to run it): %s\n", n, sc.Explicit)
				continue
			}
			names = append(names, n)
		}
	case len(args) == 0:
		var b bytes.Buffer
		writeScenarios(&b)
		return usagef("name a scenario (or --all):\n%s", b.String())
	default:
		for _, a := range args {
			if _, ok := hadrill.Find(a); !ok {
				var b bytes.Buffer
				writeScenarios(&b)
				return usagef("unknown scenario %q; the scenarios are:\n%s", a, b.String())
			}
		}
		names = args
	}
	if f.hold <= 0 || f.hold > 10*time.Minute {
		return usagef("--hold %s: give a duration above 0 and at most 10m", f.hold)
	}
	if f.baseline < 10*time.Second {
		return usagef("--baseline %s: at least 10s", f.baseline)
	}
	if f.repeat < 1 || f.repeat > 100 {
		return usagef("--repeat %d: give 1 to 100", f.repeat)
	}
	if f.output != "" && f.output != "json" && f.output != "text" {
		return usagef("-o %q: use json or text", f.output)
	}
	c, err := loadSpec(f.file, s.Err)
	if err != nil {
		return err
	}
	if f.node != "" {
		if _, ok := c.Node(f.node); !ok {
			return usagef("--node %s: no such node in %s (nodes: %s)", f.node, f.file, strings.Join(plan.Names(c.Spec.Nodes), ", "))
		}
	}
	if slices.Contains(names, "remove-add") && len(c.Controllers())-1 == 2 && c.Spec.RabbitMQ.PartitionHandling == spec.PartitionPauseMinority {
		return usagef("remove-add: while the target is out, 2 controllers run RabbitMQ, and pause_minority on 2 nodes stops the bus on any partition ('hastack node remove' refuses it): set spec.rabbitmq.partitionHandling to autoheal and run 'hastack up' first")
	}
	isLab := true
	for _, n := range c.Spec.Nodes {
		if _, ok := c.NodeSSH(n); ok {
			isLab = false
		}
	}
	if !isLab {
		var kept []string
		for _, n := range names {
			sc, _ := hadrill.Find(n)
			switch {
			case sc.LabOnly == "":
				kept = append(kept, n)
			case f.all:
				fmt.Fprintf(s.Err, "%s: left out of --all on hosts that are not a lab: %s\n", n, sc.LabOnly)
			default:
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("refused: %s on cluster %q: %s (nothing was broken)", n, c.Metadata.Name, sc.LabOnly)}
			}
		}
		names = kept
	}
	if !isLab && !f.yes {
		var b strings.Builder
		for _, n := range names {
			sc, _ := hadrill.Find(n)
			fmt.Fprintf(&b, "\n  %s: %s", n, sc.Breaks)
		}
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("cluster %q is not a lab: a drill breaks real hosts; give --yes to run it anyway. It will break:%s", c.Metadata.Name, b.String())}
	}
	t, store, err := reach(c, f.file, lab.Options{}, sshnode.Options{})
	if err != nil {
		return err
	}
	var l *lab.Lab
	if isLab {
		if l, err = lab.Open(lab.Options{}); err != nil {
			return err
		}
	}
	first := c.Controllers()[0].Name
	// The drill lock (a second drill is refused) and the cluster lock
	// (no operator's 'up' in the middle of a drill), held to the end; the
	// drill's own 'up' runs under them.
	var ctls []node.Node
	for _, n := range c.Controllers() {
		ctls = append(ctls, t.Nodes[n.Name])
	}
	locks, err := hadrill.TakeLocks(ctx, t.Nodes[first], ctls, deploy.Me("drill run "+strings.Join(names, " ")), func(format string, a ...any) {
		fmt.Fprintf(s.Err, "[lock] "+format+"\n", a...)
	})
	if err != nil {
		var le *deploy.LockedError
		switch {
		case errors.Is(err, hadrill.ErrBusy):
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("refused (nothing was broken): %w", err)}
		case errors.As(err, &le):
			return &ExitError{Code: ExitUsage, Err: fmt.Errorf("refused (nothing was broken): %w ('hastack up --break-lock' removes a lock whose holder is gone)", err)}
		}
		return err
	}
	defer locks.Release(context.WithoutCancel(ctx))
	// Status after the locks: while another drill runs, the layer is
	// broken on purpose, and the refusal must name that drill.
	r := status.Collect(ctx, statusTarget(t))
	if !r.Healthy {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("refused: status is %s, not healthy, so a drill would measure a broken layer (nothing was broken): %s", r.Verdict, strings.Join(r.Problems, "; "))}
	}
	// The OpenStack client libraries, where the rpc and cache workloads
	// may run (after status: a frozen node would make this wait).
	var skipped map[string]string
	if f.skipOpenStack {
		why := "not measured: --skip-openstack"
		skipped = map[string]string{"rpc": why, "cache": why}
	} else if why := osloMissing(ctx, t, c, names); why != "" {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("refused: %s; give --skip-openstack to run the db and mq workloads without them (rpc and cache then reported not measured). Nothing was broken", why)}
	}

	// Ctrl-C and SIGTERM end the hold early; the drill still heals.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	env := drillEnv(s, c, f, t, store, l)
	for k, v := range skipped {
		env.Skipped[k] = v
	}
	writer := r.Writer
	if writer == "" {
		for _, e := range r.Services.Endpoint {
			if e.HoldsVIP {
				writer = e.Node
			}
		}
	}
	if writer == "" {
		writer = first
	}
	var recs []hadrill.RunRecord
	var rep hadrill.Report
	notRun := ""
	for run := 1; run <= f.repeat && ctx.Err() == nil; run++ {
		for _, name := range names {
			if ctx.Err() != nil {
				break
			}
			if notRun != "" {
				rep.Scenarios = append(rep.Scenarios, hadrill.ScenarioReport{Name: name, Run: runNumber(f.repeat, run), Verdict: hadrill.VerdictError, Error: notRun})
				continue
			}
			sc, _ := hadrill.Find(name)
			target := f.node
			if target == "" {
				target = writer
				if sc.OnCompute {
					if cs := c.Computes(); len(cs) > 0 {
						target = cs[0].Name
					} else {
						target = ""
					}
				}
			}
			if target == "" {
				fmt.Fprintf(s.Err, "%s: skipped: the cluster has no compute node\n", name)
				continue
			}
			if len(recs) > 0 {
				// Each scenario starts from a healthy layer.
				if ok, problems := waitStatus(ctx, env, 3*time.Minute); !ok {
					// The rest is not run: a drill on a broken layer
					// measures nothing. The report says so.
					notRun = fmt.Sprintf("not run: status not healthy within 3m of the previous scenario: %s", strings.Join(problems, "; "))
					fmt.Fprintf(s.Err, "== %s: %s\n", name, notRun)
					rep.Scenarios = append(rep.Scenarios, hadrill.ScenarioReport{Name: name, Run: runNumber(f.repeat, run), Verdict: hadrill.VerdictError, Error: notRun})
					continue
				}
				// The writer may have moved.
				if f.node == "" && !sc.OnCompute {
					if r := status.Collect(ctx, statusTarget(t)); r.Writer != "" {
						target = r.Writer
					}
				}
			}
			fmt.Fprintf(s.Err, "== %s on %s (run %d of %d): baseline %s, hold %s\n", name, target, run, f.repeat, f.baseline, f.hold)
			rec := hadrill.Run(ctx, env, sc, target)
			recs = append(recs, rec)
			sr := hadrill.Build(rec, env.Targets)
			sr.Run = runNumber(f.repeat, run)
			rep.Scenarios = append(rep.Scenarios, sr)
			fmt.Fprintf(s.Err, "== %s on %s: %s\n", name, target, sr.Verdict)
		}
	}
	if f.repeat > 1 {
		rep.Summary = rep.Summarize()
	}
	if f.reportDir != "" {
		if err := writeDrillReport(f.reportDir, rep, recs); err != nil {
			return err
		}
		fmt.Fprintf(s.Err, "report: %s\n", filepath.Join(f.reportDir, "index.html"))
	}
	if f.output == "json" {
		err = rep.WriteJSON(s.Out)
	} else {
		err = rep.WriteText(s.Out)
		if err == nil && f.repeat > 1 {
			fmt.Fprintln(s.Out)
			err = rep.WriteSummary(s.Out)
		}
	}
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return &ExitError{Code: ExitFailed, Err: errors.New("drill interrupted; the fault was undone")}
	}
	if code := rep.ExitCode(); code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// osloMissing says where the OpenStack client libraries do not load, on
// the nodes the rpc and cache workloads may run on (every controller; the
// first compute node for power-loss), or "".
func osloMissing(ctx context.Context, t *plan.Target, c *spec.Cluster, names []string) string {
	runners := plan.Names(c.Controllers())
	if slices.Contains(names, "power-loss") {
		if cs := c.Computes(); len(cs) > 0 {
			runners = append(runners, cs[0].Name)
		}
	}
	whys := make([]string, len(runners))
	var wg sync.WaitGroup
	for i, n := range runners {
		wg.Go(func() { whys[i] = hadrill.OsloCheck(ctx, t.Nodes[n]) })
	}
	wg.Wait()
	var out []string
	for _, w := range whys {
		if w != "" {
			out = append(out, w)
		}
	}
	return strings.Join(out, "; ")
}

func runNumber(repeat, run int) int {
	if repeat > 1 {
		return run
	}
	return 0
}

func waitStatus(ctx context.Context, env *hadrill.Env, bound time.Duration) (bool, []string) {
	deadline := time.Now().Add(bound)
	for {
		ok, problems := env.Status(ctx)
		if ok || time.Now().After(deadline) || ctx.Err() != nil {
			return ok, problems
		}
		time.Sleep(time.Second)
	}
}

func writeDrillReport(dir string, rep hadrill.Report, recs []hadrill.RunRecord) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var h bytes.Buffer
	if err := rep.WriteHTML(&h); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.html"), h.Bytes(), 0o644); err != nil {
		return err
	}
	data, err := json.MarshalIndent(recs, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "timelines.json"), data, 0o644)
}

// drillEnv wires the drill to this cluster: faults through the lab (or
// through the node interface on real hosts), status, 'hastack up', and the
// workloads' endpoints and credentials.
func drillEnv(s Streams, c *spec.Cluster, f *drillFlags, t *plan.Target, store *secrets.Store, l *lab.Lab) *hadrill.Env {
	var faults hadrill.Faulter = hadrill.NodeFaulter{Nodes: t.Nodes, Services: hadrill.EngineServices}
	if l != nil {
		faults = labFaulter{l: l}
	}
	env := &hadrill.Env{
		Faults:        faults,
		Controllers:   plan.Names(c.Controllers()),
		Computes:      plan.Names(c.Computes()),
		Baseline:      f.baseline,
		Hold:          f.hold,
		Settle:        30 * time.Second,
		Targets:       hadrill.TargetsFrom(c.Spec.Drill.Targets),
		RecoveryBound: hadrill.TargetsFrom(c.Spec.Drill.Targets).HealthyAfter + time.Minute,
		After:         5 * time.Second,
		Log: func(format string, a ...any) {
			fmt.Fprintf(s.Err, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
		},
		Skipped: map[string]string{},
		Nodes:   t.Nodes,
	}
	// The OpenStack view: real oslo.messaging and oslo.cache, configured
	// from the rendered nova.conf and keystone.conf ([cache]).
	if files, err := openstack.Render(c, t.Secrets); err != nil {
		env.Skipped["rpc"], env.Skipped["cache"] = err.Error(), err.Error()
	} else {
		for _, fl := range files {
			switch fl.Path {
			case openstack.Dir + "/nova.conf":
				env.RPCConf = fl.Content
			case openstack.Dir + "/keystone.conf":
				env.CacheConf = fl.Content
			}
		}
	}
	if f.clientDefaults {
		servers := strings.Join(openstack.MemcachedServers(c), ",")
		env.RPCConf = []byte(fmt.Sprintf("[DEFAULT]\ntransport_url = %s\n[oslo_messaging_rabbit]\nrabbit_quorum_queue = %v\n",
			openstack.TransportURL(c, t.Secrets), c.Spec.RabbitMQ.QueueType != "mirrored"))
		env.CacheConf = []byte(fmt.Sprintf("[cache]\nenabled = true\nbackend = dogpile.cache.pymemcache\nmemcache_servers = %s\n", servers))
		fmt.Fprintln(s.Err, "rpc and cache workloads: the libraries' defaults (--client-defaults), not the rendered service files")
	}
	env.Status = func(ctx context.Context) (bool, []string) {
		r := status.Collect(ctx, statusTarget(t))
		return r.Healthy, r.Problems
	}
	env.Up = func(ctx context.Context) (bool, []string, error) {
		var ut *plan.Target
		var ustore *secrets.Store
		var err error
		if l != nil {
			ut, ustore, err = labTarget(c, f.file, l)
		} else {
			ut, ustore, err = target(c, f.file, lab.Options{})
		}
		if err != nil {
			return false, nil, err
		}
		bin, err := endpoint.LoadAgentBinary()
		if err != nil {
			return false, nil, err
		}
		var out bytes.Buffer
		// Under the cluster lock the drill holds for its whole run
		// (runDrill): not taken again here, which would find the
		// drill's own lock and refuse.
		rep, err := deploy.Run(ctx, ut, phases(ustore, bin, ut.SharedClock), deploy.Options{Out: &out})
		return rep.Steps > 0, upActions(out.String()), err
	}
	env.Restart = func(ctx context.Context) ([]string, error) {
		var log []string
		_, err := maint.Restart(ctx, c, t.Nodes, maint.Options{
			// The engines the workloads are clients of. The endpoint's
			// restart (a VIP move) and chrony's are left out; a full
			// restart's figures are in docs/drill.md.
			Engines: hadrill.RollingRestartEngines,
			Status:  func(ctx context.Context) status.Report { return status.Collect(ctx, statusTarget(t)) },
			Up: func(ctx context.Context) error {
				_, _, err := env.Up(ctx)
				return err
			},
			Say: func(format string, a ...any) {
				line := fmt.Sprintf(format, a...)
				log = append(log, line)
				env.Log("%s", line)
			},
		})
		return log, err
	}
	env.Membership = func(ctx context.Context, name string) ([]string, error) {
		n, ok := c.Node(name)
		if !ok || !n.IsController() {
			return nil, fmt.Errorf("remove-add: %s is not a controller of the spec", name)
		}
		orig, err := os.ReadFile(f.file)
		if err != nil {
			return nil, err
		}
		var out bytes.Buffer
		// The spec's warnings (2 controllers) are the scenario's point.
		quiet := Streams{Out: &out, Err: io.Discard}
		// Under the cluster lock the drill holds already.
		held := func(context.Context, *plan.Target) (func(), error) { return func() {}, nil }
		log := func() []string {
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			out.Reset()
			for i, l := range lines {
				// The drill logs them, with its own time stamps.
				if len(l) > 9 && l[2] == ':' && l[5] == ':' && l[8] == ' ' {
					lines[i] = l[9:]
				}
			}
			return lines
		}
		if _, err := removeNode(ctx, quiet, f.file, lab.Options{}, name, held); err != nil {
			return log(), fmt.Errorf("node remove %s: %w", name, err)
		}
		did := log()
		if _, _, err := addNode(ctx, quiet, f.file, lab.Options{}, name, &n, false, held); err != nil {
			return append(did, log()...), fmt.Errorf("node add %s: %w (the spec file lacks it until 'hastack node add %s' succeeds)", name, err, name)
		}
		did = append(did, log()...)
		// The same cluster as before: the operator's file, as written.
		return did, os.WriteFile(f.file, orig, 0o644)
	}
	vip := c.Spec.Database.Endpoint
	env.DB = &hadrill.DBOptions{
		Addr: net.JoinHostPort(vip.VIP, strconv.Itoa(vip.Port)), User: galera.AdminUser,
		Password: t.Secrets.Get(secrets.DatabaseAdminPassword),
	}
	r := c.Spec.RabbitMQ
	vhost := "/"
	if r.VHost != "/" {
		vhost += url.PathEscape(r.VHost)
	}
	var urls, nodes []string
	for _, n := range c.Controllers() {
		nodes = append(nodes, n.Name)
		urls = append(urls, "amqp://"+url.UserPassword(r.User, t.Secrets.Get(secrets.RabbitServicePassword)).String()+"@"+net.JoinHostPort(n.Address, strconv.Itoa(r.Port))+vhost)
	}
	env.MQ = &hadrill.MQOptions{URLs: urls, Nodes: nodes, Quorum: r.QueueType != "mirrored"}
	return env
}

// upActions keeps the lines of 'up' that say what it did to a host.
func upActions(out string) []string {
	var did []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "[") || strings.HasPrefix(line, "[lock]") {
			continue
		}
		rest := line[strings.Index(line, "]")+1:]
		if slices.ContainsFunc([]string{": ok (", "still working", "nothing to do", "done:", "all: "}, func(p string) bool { return strings.Contains(rest, p) }) {
			continue
		}
		did = append(did, strings.TrimSpace(line))
	}
	return did
}

// labFaulter acts on lab nodes from the host.
type labFaulter struct{ l *lab.Lab }

func (f labFaulter) KillService(ctx context.Context, n, svc string) (string, error) {
	return f.l.Kill(ctx, n, svc)
}
func (f labFaulter) KillNode(ctx context.Context, n string) (string, error) {
	return f.l.Kill(ctx, n, "")
}
func (f labFaulter) Freeze(ctx context.Context, n string) (string, error) { return f.l.Freeze(ctx, n) }
func (f labFaulter) Thaw(ctx context.Context, n string) (string, error)   { return f.l.Thaw(ctx, n) }
func (f labFaulter) Cut(ctx context.Context, n string) (string, error)    { return f.l.Partition(ctx, n) }
func (f labFaulter) Heal(ctx context.Context, n string) (string, error)   { return f.l.Heal(ctx, n) }
func (f labFaulter) StopService(ctx context.Context, n, svc string) (string, error) {
	nd, err := f.l.Node(n)
	if err != nil {
		return "", err
	}
	if err := nd.Supervisor().Stop(ctx, svc, 60*time.Second); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: stopped %s gracefully", n, svc), nil
}
