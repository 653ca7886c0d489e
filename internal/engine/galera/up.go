package galera

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"sort"
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

// ParseGraState reads grastate.dat.
func ParseGraState(data []byte) GraState {
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
			g.Seqno, _ = strconv.ParseInt(v, 10, 64)
		case "safe_to_bootstrap":
			g.SafeToBootstrap = v == "1"
		}
	}
	return g
}

// nodeFacts is what the phase learns of one controller.
type nodeFacts struct {
	name        string
	node        node.Node
	stale       []engine.File
	running     bool
	initialized bool // the datadir has system tables
	gra         GraState
	hasGra      bool
	status      map[string]string // wsrep_% status when running and answering
	startPos    string            // position recovered during a full-cluster recovery
	statusErr   error
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
		if f.stale, err = plan.StaleFiles(ctx, f.node, files); err != nil {
			return err
		}
		if f.running, err = plan.Running(ctx, f.node, ServiceName); err != nil {
			return err
		}
		if _, err := f.node.ReadFile(ctx, DataDir+"/mysql/db.frm"); err == nil {
			f.initialized = true
		} else if _, err2 := f.node.Run(ctx, node.Cmd{Argv: []string{"test", "-d", DataDir + "/mysql"}}); err2 == nil {
			f.initialized = true
		}
		if data, err := f.node.ReadFile(ctx, DataDir+"/grastate.dat"); err == nil {
			f.gra, f.hasGra = ParseGraState(data), true
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
	return plan.Phase{Name: "galera", Plan: planGalera}
}

func planGalera(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
	facts, err := gather(ctx, t)
	if err != nil {
		return nil, err
	}
	var steps []plan.Step
	wave := 0
	add := func(f *nodeFacts, action string, do func(ctx context.Context) error) {
		steps = append(steps, plan.Step{Host: f.name, Action: action, Wave: wave, Do: do})
		wave++
	}

	// The package's stand-alone MariaDB is stopped first; then the node is
	// one where nothing runs.
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
	for _, f := range stops {
		nd := f.node
		add(f, "stop the package's stand-alone MariaDB (wsrep_on=OFF, no databases of its own): this node becomes a Galera node", func(ctx context.Context) error {
			return nd.Services().Stop(ctx, ServiceName, 2*time.Minute)
		})
		f.running, f.status = false, nil
	}

	var running, primary []*nodeFacts
	for _, f := range facts {
		if f.running {
			running = append(running, f)
			if f.statusErr == nil && f.primary() {
				primary = append(primary, f)
			}
		}
	}
	// A cluster's identity: the state UUID of the running Primary
	// component, or the one every node with data agrees on.
	clusterUUID := ""
	for _, f := range primary {
		clusterUUID = f.status["wsrep_cluster_state_uuid"]
		break
	}
	var withData []*nodeFacts
	for _, f := range facts {
		if !f.running && f.hasGra && !f.gra.Fresh() {
			withData = append(withData, f)
		}
	}
	if clusterUUID == "" {
		uuids := map[string][]string{}
		for _, f := range withData {
			uuids[f.gra.UUID] = append(uuids[f.gra.UUID], f.name)
		}
		if len(uuids) > 1 {
			return nil, fmt.Errorf("the controllers hold data of different Galera clusters (%s): hastack will not merge or overwrite them; move the datadir (%s) of the nodes that do not belong aside and run 'hastack up' again", describeUUIDs(uuids), DataDir)
		}
		for u := range uuids {
			clusterUUID = u
		}
	}
	for _, f := range withData {
		if f.gra.UUID != clusterUUID {
			return nil, fmt.Errorf("%s holds data of another Galera cluster (state %s, the cluster is %s): joining would throw it away; move %s aside on %s if that is intended, then run 'hastack up' again", f.name, f.gra.UUID, clusterUUID, DataDir, f.name)
		}
	}

	// Nodes that run but do not answer, or answer non-Primary, are a
	// problem for an operator: hastack does not guess.
	for _, f := range running {
		if f.statusErr != nil {
			return nil, notAnswering(ctx, f)
		}
	}
	if len(running) > 0 && len(primary) == 0 {
		var states []string
		for _, f := range running {
			states = append(states, fmt.Sprintf("%s=%s/%s", f.name, f.status["wsrep_cluster_status"], f.status["wsrep_local_state_comment"]))
		}
		return nil, fmt.Errorf("Galera runs on %d node(s) but none is in a Primary component (%s): the cluster lost quorum; hastack does not re-bootstrap a running cluster blindly. Find the most advanced node (highest wsrep_last_committed) and run there: SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'", len(running), strings.Join(states, ", "))
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

	switch {
	case len(primary) > 0:
		// The cluster runs: join each stopped node; restart nodes whose
		// configuration changed, one at a time, each Synced before the next.
		for _, f := range facts {
			if !f.running {
				add(f, "start mariadb and join the running cluster (IST, or SST from a donor)", startAndWait(f, false))
			}
		}
		for _, f := range facts {
			if f.running && len(f.stale) > 0 {
				f := f
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
		}
	default:
		// Nothing runs. A fresh cluster bootstraps from the first
		// controller; one with data only from the node Galera marked safe.
		var boot *nodeFacts
		if len(withData) == 0 {
			boot = facts[0]
			add(boot, "bootstrap a new Galera cluster (no controller has Galera data)", startAndWait(boot, true))
		} else {
			var safe []*nodeFacts
			for _, f := range withData {
				if f.gra.SafeToBootstrap {
					safe = append(safe, f)
				}
			}
			if len(safe) == 1 {
				boot = safe[0]
				add(boot, fmt.Sprintf("bootstrap the cluster again from this node (it stopped last: safe_to_bootstrap, seqno %d)", boot.gra.Seqno), startAndWait(boot, true))
			} else {
				// Every node stopped without a clean shutdown (a power cut,
				// every node killed). The documented recovery, done here
				// rather than guessed: recover each node's last committed
				// position from InnoDB, bootstrap from the most advanced
				// one (ties: first in spec order), join the others.
				var chosen *nodeFacts
				add(withData[0], fmt.Sprintf("recover the last committed position on %s (none stopped cleanly: %s), then bootstrap from the most advanced", describeNames(withData), describeSeqnos(withData)), func(ctx context.Context) error {
					best, pos, err := recoverMostAdvanced(ctx, t, withData)
					if err != nil {
						return err
					}
					best.startPos = pos
					chosen = best
					if err := markSafeToBootstrap(ctx, best.node); err != nil {
						return err
					}
					t.Say("galera", best.name, "most advanced node: bootstrapping the cluster from it")
					return startAndWait(best, true)(ctx)
				})
				for _, f := range facts {
					f := f
					add(f, "start mariadb and join the cluster (unless it was the node bootstrapped above)", func(ctx context.Context) error {
						if f == chosen {
							return nil
						}
						return startAndWait(f, false)(ctx)
					})
				}
				break
			}
		}
		if boot != nil {
			for _, f := range facts {
				if f != boot {
					add(f, "start mariadb and join the cluster", startAndWait(f, false))
				}
			}
		}
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
		if f.running && f.synced() {
			on = f
			break
		}
	}
	if on != nil {
		out, err := SQL(ctx, on.node, fmt.Sprintf("SELECT COUNT(*) FROM mysql.global_priv WHERE User='%s' AND Host='%s';", AdminUser, host))
		if err != nil {
			return nil, err
		}
		if out == "1" {
			return nil, nil
		}
	} else {
		on = facts[0]
	}
	n := on.node
	return &plan.Step{Host: on.name, Action: fmt.Sprintf("create database user %s@'%s' (hastack's probes; password from the secrets file)", AdminUser, host), Do: func(ctx context.Context) error {
		pw := t.Secrets.Get(secrets.DatabaseAdminPassword)
		_, err := SQL(ctx, n, fmt.Sprintf("CREATE USER IF NOT EXISTS '%[1]s'@'%[2]s' IDENTIFIED BY '%[3]s';\nALTER USER '%[1]s'@'%[2]s' IDENTIFIED BY '%[3]s';\nGRANT ALL PRIVILEGES ON *.* TO '%[1]s'@'%[2]s' WITH GRANT OPTION;\n", AdminUser, host, pw))
		return err
	}}, nil
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

func describeUUIDs(m map[string][]string) string {
	var parts []string
	for u, names := range m {
		sort.Strings(names)
		parts = append(parts, u+": "+strings.Join(names, ","))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

func describeSeqnos(fs []*nodeFacts) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, fmt.Sprintf("%s seqno %d", f.name, f.gra.Seqno))
	}
	return strings.Join(parts, ", ")
}

// RecoverPosition runs mariadbd's recovery on a stopped node and returns
// its last committed position, uuid:seqno.
func RecoverPosition(ctx context.Context, n node.Node) (string, error) {
	const logFile = DataDir + "/wsrep-recovery.log"
	_, _ = n.Run(ctx, node.Cmd{Argv: []string{"rm", "-f", logFile}})
	if _, err := n.Run(ctx, node.Cmd{Argv: []string{"/usr/sbin/mariadbd", "--user=mysql", "--wsrep-recover", "--log-error=" + logFile}}); err != nil {
		return "", fmt.Errorf("recovering the last committed position (mariadbd --wsrep-recover): %w", err)
	}
	data, err := n.ReadFile(ctx, logFile)
	if err != nil {
		return "", err
	}
	pos := ParseRecoveredPosition(string(data))
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

// logTail returns the last lines of a log file on a node, for errors.
func logTail(ctx context.Context, n node.Node, path string, lines int) string {
	data, err := n.ReadFile(ctx, path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "  " + strings.Join(all, "\n  ")
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

// recoverMostAdvanced recovers every node's last committed position and
// returns the node with the highest seqno (ties: the first in spec order).
// Every node must answer: choosing among some of them could lose writes
// only the others hold.
func recoverMostAdvanced(ctx context.Context, t *plan.Target, nodes []*nodeFacts) (*nodeFacts, string, error) {
	type result struct {
		seqno int64
		pos   string
	}
	results := make([]result, len(nodes))
	names := make([]string, len(nodes))
	for i, f := range nodes {
		names[i] = f.name
	}
	err := plan.ForEach(ctx, names, func(ctx context.Context, name string) error {
		i := slices.Index(names, name)
		pos, err := RecoverPosition(ctx, nodes[i].node)
		if err != nil {
			return err
		}
		_, seq, ok := strings.Cut(pos, ":")
		n, perr := strconv.ParseInt(seq, 10, 64)
		if !ok || perr != nil {
			return fmt.Errorf("recovered position %q has no seqno", pos)
		}
		results[i] = result{n, pos}
		t.Say("galera", name, "recovered position %s", pos)
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("%w\nno node was started: every node's position is needed to pick the most advanced", err)
	}
	best := 0
	for i := range results {
		if results[i].seqno > results[best].seqno {
			best = i
		}
	}
	return nodes[best], results[best].pos, nil
}

// markSafeToBootstrap sets safe_to_bootstrap: 1 in a node's grastate.dat,
// which mariadbd requires before it bootstraps from that node.
func markSafeToBootstrap(ctx context.Context, n node.Node) error {
	_, err := n.Run(ctx, node.Cmd{Argv: []string{"sed", "-i", "s/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/", DataDir + "/grastate.dat"}})
	return err
}

func describeNames(fs []*nodeFacts) string {
	var names []string
	for _, f := range fs {
		names = append(names, f.name)
	}
	return strings.Join(names, ", ")
}
