package galera

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// ServiceName is the supervised MariaDB service.
const ServiceName = "mariadb"

// Service is mariadbd in the foreground, reading /etc/mysql/my.cnf (which
// includes the rendered 99-hastack.cnf). bootstrap starts a new cluster
// from this node's data: only ever for one node, and only when no other
// node runs.
func Service(bootstrap bool) node.Service {
	argv := []string{"/usr/sbin/mariadbd", "--user=mysql"}
	if bootstrap {
		argv = append(argv, "--wsrep-new-cluster")
	}
	return node.Service{Name: ServiceName, Argv: argv, StopSignal: 15}
}

// GraState is /var/lib/mysql/grastate.dat: what a stopped node knows of
// its place in the cluster's history.
type GraState struct {
	UUID            string
	Seqno           int64
	SafeToBootstrap bool
}

const zeroUUID = "00000000-0000-0000-0000-000000000000"

// Fresh reports a node that never took part in a cluster.
func (g GraState) Fresh() bool { return g.UUID == "" || g.UUID == zeroUUID }

// ParseGraState reads grastate.dat. A seqno that is not a number is an
// error: read as 0 it would pass for a clean stop and skip the crash
// recovery a node with seqno -1 needs.
func ParseGraState(data []byte) (GraState, error) {
	g := GraState{Seqno: -1}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "uuid":
			g.UUID = v
		case "seqno":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return g, fmt.Errorf("seqno %q is not a number", v)
			}
			g.Seqno = n
		case "safe_to_bootstrap":
			g.SafeToBootstrap = v == "1"
		}
	}
	return g, nil
}

// membershipSettings are the settings that change when a controller is
// added or removed and that a running node need not read.
var membershipSettings = []string{"wsrep_cluster_address", "wsrep_sst_donor"}

// nodeFacts is what the phase learns of one controller.
type nodeFacts struct {
	name  string
	node  node.Node
	stale []engine.File
	// peers are stale files of a running node that differ only in the
	// cluster's membership (membershipSettings): written without a
	// restart, since they are read only when the node starts.
	peers       []engine.File
	running     bool
	initialized bool // the datadir has system tables
	gra         GraState
	hasGra      bool
	status      map[string]string // wsrep_% status when running and answering
	startPos    string            // position recovered during a full-cluster recovery
	statusErr   error
	// unreachable is why the node could not be asked at all (a dead or
	// frozen host); its other facts are unknown.
	unreachable error
	hasRecord   bool     // it holds a recovery decision (NodeRecordPath)
	standalone  bool     // runs with wsrep_on=OFF: the package's MariaDB
	userDBs     []string // databases of a stand-alone MariaDB
}

func (f *nodeFacts) synced() bool {
	return f.status["wsrep_local_state_comment"] == "Synced" && f.status["wsrep_cluster_status"] == "Primary" && f.status["wsrep_ready"] == "ON"
}

func (f *nodeFacts) primary() bool { return f.status["wsrep_cluster_status"] == "Primary" }

// SQL runs statements on a node's local server as root over the unix
// socket (root authenticates by unix_socket on Debian). The statements go
// through standard input: nothing secret appears in a process list.
func SQL(ctx context.Context, n node.Node, stmts string) (string, error) {
	res, err := n.Run(ctx, node.Cmd{
		Argv:  []string{"mariadb", "--protocol=socket", "--socket=" + Socket, "-uroot", "-N", "-B"},
		Stdin: strings.NewReader(stmts),
	})
	return strings.TrimSpace(string(res.Stdout)), err
}

// LocalStatus reads the node's wsrep status variables through the local
// socket.
func LocalStatus(ctx context.Context, n node.Node) (map[string]string, error) {
	out, err := SQL(ctx, n, "SHOW GLOBAL STATUS LIKE 'wsrep_%';")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, "\t")
		if k != "" {
			m[k] = v
		}
	}
	return m, nil
}

func gather(ctx context.Context, t *plan.Target) ([]*nodeFacts, error) {
	ctls := t.Cluster.Controllers()
	facts := make([]*nodeFacts, len(ctls))
	err := plan.ForEach(ctx, plan.Names(ctls), func(ctx context.Context, name string) error {
		var i int
		for i = range ctls {
			if ctls[i].Name == name {
				break
			}
		}
		n := ctls[i]
		f := &nodeFacts{name: name, node: t.Node(name)}
		facts[i] = f
		files, err := Renderer{}.Files(t.Cluster, n, t.Secrets)
		if err != nil {
			return err
		}
		// A host that does not answer within the bound is unreachable;
		// whether that stops the phase is the decision's to say.
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := f.node.Run(actx, node.Cmd{Argv: []string{"true"}}); err != nil {
			var ce *node.CommandError
			if !errors.As(err, &ce) || actx.Err() != nil {
				f.unreachable = err
				return nil
			}
		}
		if _, err := f.node.ReadFile(ctx, NodeRecordPath); err == nil {
			f.hasRecord = true
		}
		if f.stale, err = plan.StaleFiles(ctx, f.node, files); err != nil {
			return err
		}
		if f.running, err = plan.Running(ctx, f.node, ServiceName); err != nil {
			return err
		}
		if f.running && len(f.stale) > 0 {
			only, err := plan.OnlySettingsChanged(ctx, f.node, f.stale, membershipSettings...)
			if err != nil {
				return err
			}
			if only {
				f.peers, f.stale = f.stale, nil
			}
		}
		if _, err := f.node.ReadFile(ctx, DataDir+"/mysql/db.frm"); err == nil {
			f.initialized = true
		} else if _, err2 := f.node.Run(ctx, node.Cmd{Argv: []string{"test", "-d", DataDir + "/mysql"}}); err2 == nil {
			f.initialized = true
		}
		if data, err := f.node.ReadFile(ctx, DataDir+"/grastate.dat"); err == nil {
			if f.gra, err = ParseGraState(data); err != nil {
				return fmt.Errorf("%s: %s/grastate.dat: %w; hastack cannot tell whether this node stopped cleanly: repair the file (or run 'mariadbd --wsrep-recover' on the node and write the recovered seqno), then run 'hastack up' again", name, DataDir, err)
			}
			f.hasGra = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if f.running {
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			f.status, f.statusErr = LocalStatus(qctx, f.node)
			cancel()
			waitAnswer(ctx, f)
			if f.running && f.statusErr == nil && !f.primary() {
				if err := checkStandalone(ctx, f); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return facts, err
}

// Phase brings up the Galera cluster: bootstrap one node, then join the
// others one at a time. A cluster that already has data is never
// re-bootstrapped blindly: only from the one node Galera marked safe to
// bootstrap (the last to stop cleanly), and never beside a running one.
func Phase() plan.Phase {
	return RecoverPhase(Options{})
}

// RecoverPhase is the Galera phase with the operator's options of
// 'hastack recover galera': one code path with 'up', which uses the zero
// Options.
func RecoverPhase(o Options) plan.Phase {
	return plan.Phase{Name: "galera", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		return planGalera(ctx, t, o)
	}}
}

// view is what the decision needs of the facts.
func (f *nodeFacts) view() View {
	if f.unreachable != nil {
		return View{Name: f.name}
	}
	v := View{Name: f.name, Reachable: true, Running: f.running, HasGra: f.hasGra, Gra: f.gra, Stale: len(f.stale) > 0}
	if f.running && f.statusErr != nil {
		v.StatusErr = f.statusErr.Error()
	}
	if f.running && f.statusErr == nil {
		v.Answers = true
		v.Primary = f.primary()
		v.StateUUID = f.status["wsrep_cluster_state_uuid"]
		v.Status = f.status["wsrep_cluster_status"] + "/" + f.status["wsrep_local_state_comment"]
	}
	return v
}

func planGalera(ctx context.Context, t *plan.Target, o Options) ([]plan.Step, error) {
	facts, err := gather(ctx, t)
	if err != nil {
		return nil, err
	}
	// The package's stand-alone MariaDB (apt starts it on a fresh host)
	// is stopped first; then the node is one where nothing runs.
	var alone []*nodeFacts
	for _, f := range facts {
		if f.running {
			alone = append(alone, f)
		}
	}
	stops, err := standaloneSteps(alone)
	if err != nil {
		return nil, err
	}
	var stopSteps []plan.Step
	for _, f := range stops {
		nd := f.node
		stopSteps = append(stopSteps, plan.Step{Host: f.name, Action: "stop the package's stand-alone MariaDB (wsrep_on=OFF, no databases of its own): this node becomes a Galera node", Do: func(ctx context.Context) error {
			return nd.Services().Stop(ctx, ServiceName, 2*time.Minute)
		}})
		f.running, f.status = false, nil
	}
	// A running node that does not answer (after the wait in gather):
	// the refusal names its real log.
	for _, f := range facts {
		if f.unreachable == nil && f.running && f.statusErr != nil {
			return nil, notAnswering(ctx, f)
		}
	}
	views := make([]View, len(facts))
	byName := map[string]*nodeFacts{}
	for i, f := range facts {
		views[i] = f.view()
		byName[f.name] = f
	}
	d, err := Decide(views, o)
	if err != nil {
		return nil, err
	}
	steps := stopSteps
	wave := 0
	if len(stopSteps) > 0 {
		wave = 1
	}
	add := func(f *nodeFacts, action string, do func(ctx context.Context) error) {
		steps = append(steps, plan.Step{Host: f.name, Action: action, Wave: wave, Do: do})
		wave++
	}

	prep := func(f *nodeFacts) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			if err := plan.WriteFiles(ctx, f.node, f.stale); err != nil {
				return err
			}
			if err := plan.EnsureDir(ctx, f.node, "/run/mysqld", "mysql", 0o755); err != nil {
				return err
			}
			if !f.initialized {
				if _, err := f.node.Run(ctx, node.Cmd{Argv: []string{"mariadb-install-db", "--user=mysql", "--datadir=" + DataDir, "--skip-test-db", "--auth-root-authentication-method=socket"}}); err != nil {
					return err
				}
			}
			return nil
		}
	}
	startAndWait := func(f *nodeFacts, bootstrap bool) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			if err := prep(f)(ctx); err != nil {
				return err
			}
			svc := Service(bootstrap)
			if !bootstrap {
				svc.Argv = append(svc.Argv, "--wsrep-sst-donor="+donorPreference(t.Cluster, f.name))
			}
			if f.startPos != "" {
				svc.Argv = append(svc.Argv, "--wsrep-start-position="+f.startPos)
			} else if !bootstrap && f.hasGra && !f.gra.Fresh() && f.gra.Seqno < 0 {
				// The node crashed (seqno -1): recover its last committed
				// position from InnoDB, as Debian's galera_recovery does,
				// so it can rejoin by IST instead of a full SST.
				pos, err := RecoverPosition(ctx, f.node)
				if err != nil {
					return err
				}
				t.Say("galera", f.name, "recovered position %s after a crash; rejoining from there", pos)
				svc.Argv = append(svc.Argv, "--wsrep-start-position="+pos)
			}
			if err := f.node.Services().Start(ctx, svc); err != nil {
				return err
			}
			return WaitSynced(ctx, f.node, 10*time.Minute)
		}
	}

	switch d.Mode {
	case ModeRunning:
		// The cluster runs: join each stopped node; restart nodes whose
		// configuration changed, one at a time, each Synced before the next.
		// A node whose configuration changed only in the membership (a
		// node added or removed) keeps running: a running member learns
		// the others from the cluster itself.
		for _, f := range facts {
			if len(f.peers) > 0 {
				steps = append(steps, plan.Step{Host: f.name, Wave: wave,
					Action: "write " + plan.Paths(f.peers) + ": only the membership changed (wsrep_cluster_address, wsrep_sst_donor are read at the next start), so no restart",
					Do:     func(ctx context.Context) error { return plan.WriteKeepingTime(ctx, f.node, f.peers) }})
			}
		}
		for _, name := range d.Join {
			f := byName[name]
			add(f, "start mariadb and join the running cluster (IST, or SST from a donor)", startAndWait(f, false))
		}
		for _, name := range d.Restart {
			f := byName[name]
			add(f, "write "+plan.Paths(f.stale)+" and restart mariadb (rolling: Synced before the next)", func(ctx context.Context) error {
				// Decided now, not at planning: earlier steps may have
				// joined other nodes. With no other node running (a
				// one-controller cluster) there is no peer to rejoin,
				// and the node starts the component again from its own
				// data, which it is about to stop cleanly.
				alone := true
				for _, o := range facts {
					if o == f {
						continue
					}
					if running, err := plan.Running(ctx, o.node, ServiceName); err != nil || running {
						alone = false
					}
				}
				if err := f.node.Services().Stop(ctx, ServiceName, 5*time.Minute); err != nil {
					return err
				}
				return startAndWait(f, alone)(ctx)
			})
		}
	case ModeNew, ModeSafe:
		boot := byName[d.Boot]
		add(boot, d.Describe(views), startAndWait(boot, true))
		for _, name := range d.Join {
			f := byName[name]
			add(f, "start mariadb and join the cluster", startAndWait(f, false))
		}
	case ModeRecover:
		// The documented recovery, done here rather than guessed:
		// establish each node's last committed position, choose the most
		// advanced (ties: first in spec order), write the choice down,
		// bootstrap from it, join the others. A choice written by an
		// interrupted recovery is resumed, never made again.
		var withData []*nodeFacts
		for _, name := range d.Recover {
			withData = append(withData, byName[name])
		}
		for _, name := range d.Unknown {
			withData = append(withData, byName[name])
		}
		rs := recordsFor(t, facts)
		var chosen *nodeFacts
		add(withData[0], d.Describe(views), func(ctx context.Context) error {
			start := time.Now()
			rec, err := rs.load(ctx, t.Cluster.Metadata.Name)
			if err != nil {
				return err
			}
			if rec != nil && (rec.UUID != d.UUID || byName[rec.Chosen] == nil || byName[rec.Chosen].unreachable != nil) {
				return &Refusal{
					Problem: fmt.Sprintf("a recovery decided at %s chose %s (cluster %s), which cannot be resumed now (the cluster is %s)", rec.Decided.Format(time.RFC3339), rec.Chosen, rec.UUID, d.UUID),
					Remedy:  fmt.Sprintf("look at %s and %s on the controllers; remove them only if that recovery is over", rs.local, NodeRecordPath),
				}
			}
			if rec != nil {
				t.Say("galera", rec.Chosen, "resuming the recovery decided at %s: bootstrapping from %s (%s)", rec.Decided.Format(time.RFC3339), rec.Chosen, rec.Why)
			} else {
				pos := positions(ctx, t, withData)
				name, why, err := Choose(pos, d.UUID, o.BootstrapNode, o.Yes)
				if err != nil {
					return fmt.Errorf("%w\nno node was started", err)
				}
				rec = &Record{Cluster: t.Cluster.Metadata.Name, UUID: d.UUID, Chosen: name, Why: why, Positions: pos, Decided: time.Now().UTC()}
				if err := rs.save(ctx, *rec); err != nil {
					return err
				}
				t.Say("galera", name, "chosen to bootstrap the cluster: %s; decision written to %s and %s:%s", why, rs.local, name, NodeRecordPath)
			}
			best := byName[rec.Chosen]
			pos, err := RecoverPosition(ctx, best.node)
			if err != nil {
				return err
			}
			best.startPos = pos
			chosen = best
			if err := markSafeToBootstrap(ctx, best.node); err != nil {
				return err
			}
			if err := startAndWait(best, true)(ctx); err != nil {
				return err
			}
			t.Say("galera", best.name, "bootstrapped: Primary and Synced %s after the recovery began", time.Since(start).Round(time.Millisecond))
			return nil
		})
		for _, name := range d.Join {
			f := byName[name]
			if f.unreachable != nil {
				continue
			}
			add(f, "start mariadb and join the cluster (unless it was the node bootstrapped above)", func(ctx context.Context) error {
				if f == chosen {
					return nil
				}
				return startAndWait(f, false)(ctx)
			})
		}
	case ModePromote:
		rs := recordsFor(t, facts)
		var survivors []*nodeFacts
		for _, name := range d.Promote {
			survivors = append(survivors, byName[name])
		}
		add(survivors[0], d.Describe(views), func(ctx context.Context) error {
			start := time.Now()
			// Every other controller is down or confirmed gone (Decide).
			// The survivors' positions, read now: the most advanced is
			// promoted, and the choice written down first.
			var pos []Position
			for _, f := range survivors {
				st, err := LocalStatus(ctx, f.node)
				p := Position{Node: f.name, Source: "wsrep_last_committed"}
				if err != nil {
					p.Source, p.Err = "unknown", err.Error()
				} else {
					p.UUID = st["wsrep_cluster_state_uuid"]
					p.Seqno, _ = strconv.ParseInt(st["wsrep_last_committed"], 10, 64)
				}
				pos = append(pos, p)
			}
			for _, name := range d.Unknown {
				pos = append(pos, Position{Node: name, Source: "unknown", Err: "unreachable; confirmed gone by the operator (--yes)"})
			}
			uuid := ""
			for _, p := range pos {
				if p.Source != "unknown" {
					uuid = p.UUID
					break
				}
			}
			named, yes := o.BootstrapNode, o.Yes
			if named == "" && len(d.Unknown) > 0 {
				// The operator confirmed the unknown nodes gone: choose
				// among the survivors, saying what cannot be known.
				best := -1
				for i, p := range pos {
					if p.Source != "unknown" && (best < 0 || p.Seqno > pos[best].Seqno) {
						best = i
					}
				}
				if best < 0 {
					return &Refusal{Problem: "no survivor's position can be read", Remedy: "look at the survivors' logs"}
				}
				named = pos[best].Node
			}
			name, why, err := Choose(pos, uuid, named, yes)
			if err != nil {
				return err
			}
			if err := rs.save(ctx, Record{Cluster: t.Cluster.Metadata.Name, UUID: uuid, Chosen: name, Why: why, Positions: pos, Decided: time.Now().UTC()}); err != nil {
				return err
			}
			t.Say("galera", name, "promoting to a Primary component (pc.bootstrap): %s", why)
			f := byName[name]
			if _, err := SQL(ctx, f.node, "SET GLOBAL wsrep_provider_options='pc.bootstrap=YES';"); err != nil {
				return err
			}
			if err := WaitSynced(ctx, f.node, 5*time.Minute); err != nil {
				return err
			}
			t.Say("galera", name, "Primary and Synced %s after the promotion began", time.Since(start).Round(time.Millisecond))
			return nil
		})
		for _, name := range d.Join {
			f := byName[name]
			add(f, "start mariadb and join the promoted component", startAndWait(f, false))
		}
	}
	// A recovery's record is removed once the cluster runs again: by the
	// recovery itself, or by the next run that finds a Primary component.
	recorded := false
	for _, f := range facts {
		recorded = recorded || f.hasRecord
	}
	if t.SpecPath != "" {
		if _, err := os.Stat(RecordPath(t.SpecPath)); err == nil {
			recorded = true
		}
	}
	if d.Mode == ModeRecover || d.Mode == ModePromote || recorded {
		rs := recordsFor(t, facts)
		add(facts[0], "remove the recovery decision once every node runs ("+NodeRecordPath+")", func(ctx context.Context) error {
			return rs.clear(ctx)
		})
	}

	// hastack's own database user, for probes over the network. Created
	// on one node; Galera replicates it.
	userStep, err := planAdminUser(ctx, t, facts)
	if err != nil {
		return nil, err
	}
	if userStep != nil {
		userStep.Wave = wave
		steps = append(steps, *userStep)
	}
	return steps, nil
}

// AdminUser is hastack's database user, allowed from the management
// network only.
const AdminUser = "hastack"

// AdminHost is the MariaDB host pattern of the management network,
// e.g. 10.77.0.0/255.255.252.0.
func AdminHost(c *spec.Cluster) string {
	nw, _ := c.Network(spec.ManagementNetwork)
	p, err := netip.ParsePrefix(nw.CIDR)
	if err != nil {
		return "%"
	}
	p = p.Masked()
	mask := uint32(0xffffffff) << (32 - p.Bits())
	return fmt.Sprintf("%s/%d.%d.%d.%d", p.Addr(), mask>>24, mask>>16&0xff, mask>>8&0xff, mask&0xff)
}

func planAdminUser(ctx context.Context, t *plan.Target, facts []*nodeFacts) (*plan.Step, error) {
	host := AdminHost(t.Cluster)
	// Ask a synced node whether the user is there already; with none
	// synced (a cluster still to bootstrap) it is created after the
	// cluster forms, on the first controller.
	var on *nodeFacts
	for _, f := range facts {
		if f.unreachable == nil && f.running && f.synced() {
			on = f
			break
		}
	}
	if on != nil {
		out, err := SQL(ctx, on.node, fmt.Sprintf("SELECT COUNT(*) FROM mysql.global_priv WHERE User=%s AND Host=%s;", Quote(AdminUser), Quote(host)))
		if err != nil {
			return nil, err
		}
		if out == "1" {
			return nil, nil
		}
	} else {
		for _, f := range facts {
			if f.unreachable == nil {
				on = f
				break
			}
		}
	}
	n := on.node
	return &plan.Step{Host: on.name, Action: fmt.Sprintf("create database user %s@'%s' (hastack's probes; password from the secrets file)", AdminUser, host), Do: func(ctx context.Context) error {
		pw := t.Secrets.Get(secrets.DatabaseAdminPassword)
		if pw == "" {
			return fmt.Errorf("the secrets file holds no %s: run 'hastack up', which generates it, rather than creating a user without a password", secrets.DatabaseAdminPassword)
		}
		_, err := SQL(ctx, n, fmt.Sprintf("CREATE USER IF NOT EXISTS %[1]s@%[2]s IDENTIFIED BY %[3]s;\nALTER USER %[1]s@%[2]s IDENTIFIED BY %[3]s;\nGRANT ALL PRIVILEGES ON *.* TO %[1]s@%[2]s WITH GRANT OPTION;\n", Quote(AdminUser), Quote(host), Quote(pw)))
		return err
	}}, nil
}

// Quote is s as a MariaDB string literal: quotes and backslashes
// escaped, NUL and line ends written as escapes, so that no value (a
// password from the secrets file) can end the literal or the statement.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range s {
		switch r {
		case '\'':
			b.WriteString(`\'`)
		case '\\':
			b.WriteString(`\\`)
		case 0:
			b.WriteString(`\0`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case 0x1a:
			b.WriteString(`\Z`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// WaitSynced waits until the local node is Synced in a Primary component,
// failing early when mariadbd exits.
func WaitSynced(ctx context.Context, n node.Node, timeout time.Duration) error {
	return plan.WaitUntil(ctx, n.Name()+": mariadb Synced", timeout, func(ctx context.Context) (bool, string, error) {
		st, err := n.Services().Status(ctx, ServiceName)
		if err == nil && !st.Running {
			where, tail := plan.ServiceLog(ctx, n, ServiceName, 12)
			return false, "", fmt.Errorf("mariadbd exited (code %d %s); last lines of %s on %s:\n%s", st.ExitCode, st.Signal, where, n.Name(), tail)
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := LocalStatus(qctx, n)
		if err != nil {
			return false, "not answering yet", nil
		}
		state := s["wsrep_local_state_comment"]
		if state == "Synced" && s["wsrep_cluster_status"] == "Primary" && s["wsrep_ready"] == "ON" {
			return true, "", nil
		}
		return false, fmt.Sprintf("%s, %s", s["wsrep_cluster_status"], state), nil
	})
}

// RecoverPosition runs mariadbd's recovery on a stopped node and returns
// its last committed position, uuid:seqno.
func RecoverPosition(ctx context.Context, n node.Node) (string, error) {
	const logFile = DataDir + "/wsrep-recovery.log"
	run := func(extra ...string) (string, error) {
		_, _ = n.Run(ctx, node.Cmd{Argv: []string{"rm", "-f", logFile}})
		argv := append([]string{"/usr/sbin/mariadbd", "--user=mysql", "--wsrep-recover", "--log-error=" + logFile}, extra...)
		_, err := n.Run(ctx, node.Cmd{Argv: argv})
		data, rerr := n.ReadFile(ctx, logFile)
		if rerr != nil && err == nil {
			err = rerr
		}
		return string(data), err
	}
	log, err := run()
	if err != nil && strings.Contains(log, "tc-heuristic-recover") {
		// InnoDB holds prepared XA transactions no coordinator will
		// resolve (the server crashed between prepare and commit): the
		// server refuses to start until they are rolled back. They were
		// never acknowledged, so rolling back loses nothing a client
		// was told is committed.
		log, err = run("--tc-heuristic-recover=ROLLBACK")
		if err == nil {
			log = "(prepared transactions rolled back)\n" + log
		}
	}
	if err != nil {
		return "", fmt.Errorf("recovering the last committed position (mariadbd --wsrep-recover): %w", err)
	}
	pos := ParseRecoveredPosition(log)
	if pos == "" {
		return "", fmt.Errorf("mariadbd --wsrep-recover reported no position; see %s on %s", logFile, n.Name())
	}
	return pos, nil
}

// ParseRecoveredPosition finds "WSREP: Recovered position: uuid:seqno" in
// mariadbd's log; the last one wins.
func ParseRecoveredPosition(log string) string {
	pos := ""
	for _, line := range strings.Split(log, "\n") {
		if _, after, ok := strings.Cut(line, "WSREP: Recovered position: "); ok {
			pos = strings.TrimSpace(after)
		}
	}
	return pos
}

// donorPreference lists the other controllers, last first, for a joining
// node's state transfer. HAProxy sends writes to the first healthy
// controller in spec order, and a donor is taken out of HAProxy while it
// donates; asking the last ones first keeps the writer where it is. The
// trailing comma lets Galera fall back to any node when none of them can.
func donorPreference(c *spec.Cluster, joiner string) string {
	var names []string
	ctls := c.Controllers()
	for i := len(ctls) - 1; i >= 0; i-- {
		if ctls[i].Name != joiner {
			names = append(names, ctls[i].Name)
		}
	}
	return strings.Join(names, ",") + ","
}

// markSafeToBootstrap sets safe_to_bootstrap: 1 in a node's grastate.dat,
// which mariadbd requires before it bootstraps from that node.
func markSafeToBootstrap(ctx context.Context, n node.Node) error {
	_, err := n.Run(ctx, node.Cmd{Argv: []string{"sed", "-i", "s/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/", DataDir + "/grastate.dat"}})
	return err
}
