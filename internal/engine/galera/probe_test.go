package galera

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// parseCaptured turns captured tab-separated SHOW STATUS output into the
// lower-cased map the probe builds from the wire.
func parseCaptured(t *testing.T, s string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			t.Fatalf("captured line %q has no tab", sc.Text())
		}
		vars[strings.ToLower(name)] = value
	}
	return vars
}

func TestStatusFromCapturedOutput(t *testing.T) {
	nonPrimary := strings.NewReplacer(
		"wsrep_cluster_status\tPrimary", "wsrep_cluster_status\tnon-Primary",
		"wsrep_ready\tON", "wsrep_ready\tOFF",
	).Replace(capturedSynced) // a minority node: derived, see the case below
	for _, tc := range []struct {
		name, output string
		want         Status
	}{
		{"synced", capturedSynced, Status{
			Healthy: true, Address: "a", ClusterSize: 1, ClusterStatus: "Primary",
			ClusterStateUUID: "2d3cfb04-e83e-11f1-b6aa-520944c28f3a", LocalState: "Synced",
			Ready: true, Connected: true,
		}},
		{"desynced", capturedDesynced, Status{
			Problem: "not Synced (wsrep_local_state_comment=Donor/Desynced)",
			Address: "a", ClusterSize: 1, ClusterStatus: "Primary",
			ClusterStateUUID: "2d3cfb04-e83e-11f1-b6aa-520944c28f3a", LocalState: "Donor/Desynced",
			Ready: true, Connected: true,
		}},
		{"disconnected", capturedDisconnected, Status{
			Problem: "not connected to the cluster (wsrep_connected=OFF)",
			Address: "a", ClusterStatus: "Disconnected",
			ClusterStateUUID: "2d3cfb04-e83e-11f1-b6aa-520944c28f3a", LocalState: "Initialized",
		}},
		{"wsrep off", capturedWsrepOff, Status{
			Problem: "Galera is not loaded on this server (wsrep_on=OFF or no wsrep_provider)",
			Address: "a", ClusterStatus: "Disconnected",
		}},
		// A node cut off from the majority keeps its connection to what is
		// left of the group but loses the Primary component and refuses
		// queries. Derived from the synced capture (a single node cannot
		// lose quorum), with the two values such a node reports.
		{"non-primary", nonPrimary, Status{
			Problem: "not in the Primary component (wsrep_cluster_status=non-Primary, cluster size 1): it lost quorum and refuses queries",
			Address: "a", ClusterSize: 1, ClusterStatus: "non-Primary",
			ClusterStateUUID: "2d3cfb04-e83e-11f1-b6aa-520944c28f3a", LocalState: "Synced",
			Connected: true,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := statusFromVars("a", parseCaptured(t, tc.output))
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestProbeFlowControlAndQueue(t *testing.T) {
	out := strings.NewReplacer(
		"wsrep_flow_control_paused\t0\n", "wsrep_flow_control_paused\t0.25\n",
		"wsrep_local_recv_queue\t0\n", "wsrep_local_recv_queue\t17\n",
	).Replace(capturedSynced)
	st := statusFromVars("a", parseCaptured(t, out))
	if st.FlowControlPaused != 0.25 || st.LocalRecvQueue != 17 {
		t.Errorf("flow control %v, recv queue %d; want 0.25, 17", st.FlowControlPaused, st.LocalRecvQueue)
	}
}

func TestProbeNeedsOneTarget(t *testing.T) {
	for _, o := range []ProbeOptions{{}, {Address: "127.0.0.1:1", Socket: "/nonexistent"}} {
		st, err := Probe(context.Background(), o)
		if err == nil || st.Healthy || st.Problem == "" {
			t.Errorf("Probe(%+v) = %+v, %v; want an error and a problem", o, st, err)
		}
	}
}

func TestProbeUnreachable(t *testing.T) {
	st, err := Probe(context.Background(), ProbeOptions{Socket: filepath.Join(t.TempDir(), "none.sock"), User: "root"})
	if err == nil || st.Healthy || !strings.Contains(st.Problem, "none.sock") {
		t.Errorf("got %+v, %v; want an error naming the socket", st, err)
	}
}

// Output of SHOW GLOBAL STATUS LIKE 'wsrep_%' (mariadb -e, tab-separated),
// captured from mariadbd 10.11.19 with galera-4 (provider 4.23) on this project's
// test machine: a single-node cluster just bootstrapped,
const capturedSynced = `wsrep_local_state_uuid	2d3cfb04-e83e-11f1-b6aa-520944c28f3a
wsrep_protocol_version	11
wsrep_protocol_application	4
wsrep_protocol_replicator	11
wsrep_protocol_gcs	5
wsrep_last_committed	1
wsrep_replicated	0
wsrep_replicated_bytes	0
wsrep_repl_keys	0
wsrep_repl_keys_bytes	0
wsrep_repl_data_bytes	0
wsrep_repl_other_bytes	0
wsrep_received	4
wsrep_received_bytes	144
wsrep_local_commits	0
wsrep_local_cert_failures	0
wsrep_local_replays	0
wsrep_local_send_queue	0
wsrep_local_send_queue_max	1
wsrep_local_send_queue_min	0
wsrep_local_send_queue_avg	0
wsrep_local_recv_queue	0
wsrep_local_recv_queue_max	2
wsrep_local_recv_queue_min	0
wsrep_local_recv_queue_avg	0.5
wsrep_local_cached_downto	1
wsrep_flow_control_paused_ns	0
wsrep_flow_control_paused	0
wsrep_flow_control_sent	0
wsrep_flow_control_recv	0
wsrep_flow_control_active	false
wsrep_flow_control_requested	false
wsrep_cert_deps_distance	0
wsrep_apply_oooe	0
wsrep_apply_oool	0
wsrep_apply_window	0
wsrep_apply_waits	0
wsrep_commit_oooe	0
wsrep_commit_oool	0
wsrep_commit_window	0
wsrep_local_state	4
wsrep_local_state_comment	Synced
wsrep_cert_index_size	0
wsrep_causal_reads	0
wsrep_cert_interval	0
wsrep_open_transactions	0
wsrep_open_connections	0
wsrep_incoming_addresses	AUTO
wsrep_cluster_weight	1
wsrep_desync_count	0
wsrep_evs_delayed	
wsrep_evs_evict_list	
wsrep_evs_repl_latency	5.471e-06/7.165e-06/9.719e-06/1.83777e-06/3
wsrep_evs_state	OPERATIONAL
wsrep_gcomm_uuid	2d3cbedd-e83e-11f1-9c24-6772cf0102d6
wsrep_gmcast_segment	0
wsrep_checkpoint_position	2d3cfb04-e83e-11f1-b6aa-520944c28f3a:1
wsrep_se_checkpoint	2d3cfb04-e83e-11f1-b6aa-520944c28f3a:1 0-1-0
wsrep_applier_thread_count	1
wsrep_cluster_capabilities	
wsrep_cluster_conf_id	1
wsrep_cluster_size	1
wsrep_cluster_state_uuid	2d3cfb04-e83e-11f1-b6aa-520944c28f3a
wsrep_cluster_status	Primary
wsrep_connected	ON
wsrep_local_bf_aborts	0
wsrep_local_index	0
wsrep_provider_capabilities	:MULTI_MASTER:CERTIFICATION:PARALLEL_APPLYING:TRX_REPLAY:ISOLATION:PAUSE:CAUSAL_READS:INCREMENTAL_WRITESET:UNORDERED:PREORDERED:STREAMING:NBO:
wsrep_provider_name	Galera
wsrep_provider_vendor	Codership Oy <info@codership.com>
wsrep_provider_version	4.23(rXXXX)
wsrep_ready	ON
wsrep_rollbacker_thread_count	1
wsrep_thread_count	2
`

// the same node after SET GLOBAL wsrep_desync=ON,
const capturedDesynced = `wsrep_local_state_uuid	2d3cfb04-e83e-11f1-b6aa-520944c28f3a
wsrep_protocol_version	11
wsrep_protocol_application	4
wsrep_protocol_replicator	11
wsrep_protocol_gcs	5
wsrep_last_committed	1
wsrep_replicated	0
wsrep_replicated_bytes	0
wsrep_repl_keys	0
wsrep_repl_keys_bytes	0
wsrep_repl_data_bytes	0
wsrep_repl_other_bytes	0
wsrep_received	4
wsrep_received_bytes	144
wsrep_local_commits	0
wsrep_local_cert_failures	0
wsrep_local_replays	0
wsrep_local_send_queue	0
wsrep_local_send_queue_max	1
wsrep_local_send_queue_min	0
wsrep_local_send_queue_avg	0
wsrep_local_recv_queue	0
wsrep_local_recv_queue_max	2
wsrep_local_recv_queue_min	0
wsrep_local_recv_queue_avg	0.5
wsrep_local_cached_downto	1
wsrep_flow_control_paused_ns	0
wsrep_flow_control_paused	0
wsrep_flow_control_sent	0
wsrep_flow_control_recv	0
wsrep_flow_control_active	false
wsrep_flow_control_requested	false
wsrep_cert_deps_distance	0
wsrep_apply_oooe	0
wsrep_apply_oool	0
wsrep_apply_window	0
wsrep_apply_waits	0
wsrep_commit_oooe	0
wsrep_commit_oool	0
wsrep_commit_window	0
wsrep_local_state	2
wsrep_local_state_comment	Donor/Desynced
wsrep_cert_index_size	0
wsrep_causal_reads	0
wsrep_cert_interval	0
wsrep_open_transactions	0
wsrep_open_connections	0
wsrep_incoming_addresses	AUTO
wsrep_cluster_weight	1
wsrep_desync_count	1
wsrep_evs_delayed	
wsrep_evs_evict_list	
wsrep_evs_repl_latency	5.471e-06/7.10875e-06/9.719e-06/1.59453e-06/4
wsrep_evs_state	OPERATIONAL
wsrep_gcomm_uuid	2d3cbedd-e83e-11f1-9c24-6772cf0102d6
wsrep_gmcast_segment	0
wsrep_checkpoint_position	2d3cfb04-e83e-11f1-b6aa-520944c28f3a:1
wsrep_se_checkpoint	2d3cfb04-e83e-11f1-b6aa-520944c28f3a:1 0-1-0
wsrep_applier_thread_count	1
wsrep_cluster_capabilities	
wsrep_cluster_conf_id	1
wsrep_cluster_size	1
wsrep_cluster_state_uuid	2d3cfb04-e83e-11f1-b6aa-520944c28f3a
wsrep_cluster_status	Primary
wsrep_connected	ON
wsrep_local_bf_aborts	0
wsrep_local_index	0
wsrep_provider_capabilities	:MULTI_MASTER:CERTIFICATION:PARALLEL_APPLYING:TRX_REPLAY:ISOLATION:PAUSE:CAUSAL_READS:INCREMENTAL_WRITESET:UNORDERED:PREORDERED:STREAMING:NBO:
wsrep_provider_name	Galera
wsrep_provider_vendor	Codership Oy <info@codership.com>
wsrep_provider_version	4.23(rXXXX)
wsrep_ready	ON
wsrep_rollbacker_thread_count	1
wsrep_thread_count	2
`

// the same node after setting wsrep_cluster_address to the empty string (it
// left the cluster),
const capturedDisconnected = `wsrep_local_state_uuid	2d3cfb04-e83e-11f1-b6aa-520944c28f3a
wsrep_protocol_version	11
wsrep_protocol_application	4
wsrep_protocol_replicator	11
wsrep_protocol_gcs	5
wsrep_last_committed	1
wsrep_replicated	0
wsrep_replicated_bytes	0
wsrep_repl_keys	0
wsrep_repl_keys_bytes	0
wsrep_repl_data_bytes	0
wsrep_repl_other_bytes	0
wsrep_received	7
wsrep_received_bytes	232
wsrep_local_commits	0
wsrep_local_cert_failures	0
wsrep_local_replays	0
wsrep_local_send_queue	0
wsrep_local_send_queue_max	1
wsrep_local_send_queue_min	0
wsrep_local_send_queue_avg	0
wsrep_local_recv_queue	0
wsrep_local_recv_queue_max	2
wsrep_local_recv_queue_min	0
wsrep_local_recv_queue_avg	0.428571
wsrep_local_cached_downto	1
wsrep_flow_control_paused_ns	0
wsrep_flow_control_paused	0
wsrep_flow_control_sent	0
wsrep_flow_control_recv	0
wsrep_flow_control_active	false
wsrep_flow_control_requested	false
wsrep_cert_deps_distance	0
wsrep_apply_oooe	0
wsrep_apply_oool	0
wsrep_apply_window	0
wsrep_apply_waits	0
wsrep_commit_oooe	0
wsrep_commit_oool	0
wsrep_commit_window	0
wsrep_local_state	0
wsrep_local_state_comment	Initialized
wsrep_cert_index_size	0
wsrep_causal_reads	0
wsrep_cert_interval	0
wsrep_open_transactions	0
wsrep_open_connections	0
wsrep_incoming_addresses	
wsrep_checkpoint_position	2d3cfb04-e83e-11f1-b6aa-520944c28f3a:1
wsrep_se_checkpoint	2d3cfb04-e83e-11f1-b6aa-520944c28f3a:1 0-1-0
wsrep_applier_thread_count	0
wsrep_cluster_capabilities	
wsrep_cluster_conf_id	18446744073709551615
wsrep_cluster_size	0
wsrep_cluster_state_uuid	2d3cfb04-e83e-11f1-b6aa-520944c28f3a
wsrep_cluster_status	Disconnected
wsrep_connected	OFF
wsrep_local_bf_aborts	0
wsrep_local_index	18446744073709551615
wsrep_provider_capabilities	:MULTI_MASTER:CERTIFICATION:PARALLEL_APPLYING:TRX_REPLAY:ISOLATION:PAUSE:CAUSAL_READS:INCREMENTAL_WRITESET:UNORDERED:PREORDERED:STREAMING:NBO:
wsrep_provider_name	Galera
wsrep_provider_vendor	Codership Oy <info@codership.com>
wsrep_provider_version	4.23(rXXXX)
wsrep_ready	OFF
wsrep_rollbacker_thread_count	0
wsrep_thread_count	0
`

// and the same datadir started without wsrep options (plain MariaDB).
const capturedWsrepOff = `wsrep_applier_thread_count	0
wsrep_cluster_capabilities	
wsrep_cluster_conf_id	18446744073709551615
wsrep_cluster_size	0
wsrep_cluster_state_uuid	
wsrep_cluster_status	Disconnected
wsrep_connected	OFF
wsrep_local_bf_aborts	0
wsrep_local_index	18446744073709551615
wsrep_provider_capabilities	
wsrep_provider_name	
wsrep_provider_vendor	
wsrep_provider_version	
wsrep_ready	OFF
wsrep_rollbacker_thread_count	0
wsrep_thread_count	0
`

// integration skips under -short and fails, rather than skips, without root:
// CI runs as root, and a silently skipped integration test proves nothing.
func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration: starts a real mariadbd with Galera on loopback; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root (mariadbd runs as the mysql user); run as root, or use -short")
	}
	for _, bin := range []string{"mariadbd", "mariadb-install-db"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed: run scripts/install-deps", bin)
		}
	}
	if _, err := os.Stat(ProviderPath); err != nil {
		t.Fatalf("Galera provider missing (%v): run scripts/install-deps", err)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// galeraServer is a real mariadbd with Galera, bootstrapped as a cluster of
// one on 127.0.0.1, in a folder of its own.
type galeraServer struct {
	dir, socket, addr string
	cmd               *exec.Cmd
	exited            chan struct{}
}

func startGalera(t *testing.T) *galeraServer {
	t.Helper()
	// Not t.TempDir: mariadbd runs as mysql and must traverse the folder,
	// which t.TempDir creates 0700 under a parent that is 0700 too.
	dir, err := os.MkdirTemp("", "hastack-galera-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mysql, err := user.Lookup(User)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(mysql.Uid)
	gid, _ := strconv.Atoi(mysql.Gid)
	// The socket folder belongs to mysql, as /run/mysqld does on a node.
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, uid, gid); err != nil {
		t.Fatal(err)
	}
	s := &galeraServer{
		dir:    dir,
		socket: filepath.Join(run, "mysqld.sock"),
		addr:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		exited: make(chan struct{}),
	}
	data := filepath.Join(dir, "data")
	// unix_socket for root: the agent's default login, as on a node.
	install := exec.Command("mariadb-install-db", "--no-defaults", "--datadir="+data, "--user="+User,
		"--auth-root-authentication-method=socket", "--skip-test-db")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}

	_, port, _ := net.SplitHostPort(s.addr)
	gmcast, ist := freePort(t), freePort(t)
	errLog := filepath.Join(dir, "error.log")
	s.cmd = exec.Command("mariadbd", "--no-defaults", "--user="+User,
		"--datadir="+data, "--socket="+s.socket, "--pid-file="+filepath.Join(run, "mysqld.pid"),
		"--port="+port, "--bind-address=127.0.0.1", "--log-error="+errLog,
		// Small memory and disk: this is a probe target, not a database.
		"--innodb-buffer-pool-size=32M", "--skip-name-resolve",
		"--binlog-format=ROW", "--innodb-autoinc-lock-mode=2",
		"--wsrep-on=ON", "--wsrep-provider="+ProviderPath,
		"--wsrep-cluster-name=hastack-probe-test", "--wsrep-node-name=probe-test",
		// gcomm:// with no peer plus --wsrep-new-cluster: bootstrap a
		// cluster of one (the first node of 'hastack up' does the same).
		"--wsrep-cluster-address=gcomm://", "--wsrep-new-cluster",
		"--wsrep-node-address=127.0.0.1",
		fmt.Sprintf("--wsrep-sst-receive-address=127.0.0.1:%d", freePort(t)),
		// Every Galera port on loopback; gcache small (the default
		// preallocates 128 MB in the datadir).
		fmt.Sprintf("--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:%d;ist.recv_addr=127.0.0.1:%d;gcache.size=8M", gmcast, ist),
	)
	out, err := os.Create(filepath.Join(dir, "stdout.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			if b, err := os.ReadFile(errLog); err == nil {
				t.Logf("mariadbd error log:\n%s", tail(b, 4000))
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		st, err := Probe(ctx, ProbeOptions{Socket: s.socket, User: "root"})
		if err == nil && st.Healthy {
			return s
		}
		select {
		case <-s.exited:
			b, _ := os.ReadFile(errLog)
			t.Fatalf("mariadbd exited while starting: %v\n%s", s.cmd.ProcessState, tail(b, 4000))
		case <-ctx.Done():
			t.Fatalf("mariadbd not Synced in time: %+v, %v", st, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop ends mariadbd: SIGTERM (a clean shutdown), SIGKILL if it hangs.
func (s *galeraServer) stop(t *testing.T) {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		t.Errorf("mariadbd did not stop on SIGTERM within 60 s; killing it")
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
}

// exec runs statements as root over the socket.
func (s *galeraServer) exec(t *testing.T, stmts ...string) {
	t.Helper()
	db, err := open(ProbeOptions{Socket: s.socket, User: "root"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func TestIntegrationProbe(t *testing.T) {
	integration(t)
	s := startGalera(t)
	ctx := context.Background()

	st, err := Probe(ctx, ProbeOptions{Socket: s.socket, User: "root"})
	if err != nil {
		t.Fatal(err)
	}
	if !st.Healthy || st.Problem != "" || st.ClusterSize != 1 || st.ClusterStatus != ClusterPrimary ||
		st.LocalState != StateSynced || !st.Ready || !st.Connected || st.ClusterStateUUID == "" || st.ReadOnly {
		t.Errorf("fresh single-node cluster: %+v", st)
	}

	// hastack's own user over TCP, as 'hastack status' asks each controller.
	// It needs no privilege at all: SHOW GLOBAL STATUS and @@read_only are
	// open to any account.
	s.exec(t, "CREATE USER 'hastack'@'127.0.0.1' IDENTIFIED BY 'probe-secret'")
	tcp := ProbeOptions{Address: s.addr, User: "hastack", Password: "probe-secret"}
	if st, err := Probe(ctx, tcp); err != nil || !st.Healthy {
		t.Errorf("over TCP as hastack: %+v, %v", st, err)
	}
	bad := tcp
	bad.Password = "wrong"
	if st, err := Probe(ctx, bad); err == nil || st.Healthy || !strings.Contains(st.Problem, "Access denied") {
		t.Errorf("wrong password: %+v, %v; want access denied", st, err)
	}

	// A desynced node (as a donor is) still answers queries but is not
	// Synced, so it must not be reported healthy.
	s.exec(t, "SET GLOBAL wsrep_desync=ON")
	st, err = Probe(ctx, tcp)
	if err != nil || st.Healthy || st.LocalState != StateDonor || !st.Ready {
		t.Errorf("desynced: %+v, %v; want unhealthy, %s, ready", st, err, StateDonor)
	}
	// wsrep_desync=OFF returns the node to Synced asynchronously, once it
	// has caught up: wait for that (within a generous bound) first.
	waitSynced := func(after string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			st, err = Probe(ctx, tcp)
			if err == nil && st.LocalState == StateSynced {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: still %+v, %v after 15 s; want Synced", after, st, err)
			}
		}
	}
	s.exec(t, "SET GLOBAL wsrep_desync=OFF")
	waitSynced("wsrep_desync=OFF")
	// MariaDB takes the global read lock to switch read_only on, and
	// Galera desyncs the node while it holds it (as for FLUSH TABLES WITH
	// READ LOCK; failed a loaded run once, Donor/Desynced right after):
	// the return to Synced is asynchronous again.
	s.exec(t, "SET GLOBAL read_only=ON")
	waitSynced("read_only=ON")
	st, err = Probe(ctx, tcp)
	if err != nil || !st.Healthy || !st.ReadOnly {
		t.Errorf("read_only: %+v, %v; want healthy (still a member) and readOnly", st, err)
	}

	s.stop(t)
	st, err = Probe(ctx, tcp)
	var nerr *net.OpError
	if err == nil || st.Healthy || !errors.As(err, &nerr) {
		t.Errorf("stopped: %+v, %v; want a connection error", st, err)
	}
}
