package rabbitmq

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// Answers of RabbitMQ 3.10.8's management API to the probe's requests,
// captured on this project's test machine from a single node (rabbit@localhost)
// with two classic queues under an ha-mode=all policy and one quorum queue.
const (
	capturedOverview = `{"rabbitmq_version":"3.10.8","cluster_name":"rabbit@vm","node":"rabbit@localhost"}`
	capturedNodes    = `[{"partitions":[],"fd_total":20000,"mem_limit":10110604083,"mem_alarm":false,"disk_free_limit":50000000,"disk_free_alarm":false,"uptime":161325,"name":"rabbit@localhost","running":true,"mem_used":134295552,"fd_used":39,"disk_free":84032376832}]`
	// The same node with a disk alarm raised (rabbitmqctl set_disk_free_limit).
	capturedNodesDiskAlarm = `[{"partitions":[],"fd_total":20000,"mem_limit":10110604083,"mem_alarm":false,"disk_free_limit":1000000000000000,"disk_free_alarm":true,"uptime":151321,"name":"rabbit@localhost","running":true,"mem_used":134270976,"fd_used":39,"disk_free":84050161664}]`
	capturedAlarmsDisk     = `{"alarms":[{"node":"rabbit@localhost","resource":"disk space"}],"reason":"There are alarms in effect in the cluster","status":"failed"}`
	capturedAlarmsNone     = `{"status":"ok"}`
	// The first answer after a start, before any metrics are collected.
	capturedNodesFresh = `[{"name":"rabbit@localhost","running":true}]`
	capturedQueues     = `[{"name":"c1","node":"rabbit@localhost","policy":"ha","slave_nodes":[],"state":"live","synchronised_slave_nodes":[],"type":"classic","vhost":"/"},{"name":"c2","node":"rabbit@localhost","policy":"ha","slave_nodes":[],"state":"live","synchronised_slave_nodes":[],"type":"classic","vhost":"/"},{"leader":"rabbit@localhost","members":["rabbit@localhost"],"name":"q1","online":["rabbit@localhost"],"state":"live","type":"quorum","vhost":"/"}]`
	capturedUsers      = `[{"name":"hastack"}]`
	capturedPolicies   = `[{"vhost":"/","name":"ha","pattern":"^c","apply-to":"queues","definition":{"ha-mode":"all","ha-sync-mode":"automatic"},"priority":0}]`
)

type captured struct {
	overview, nodes, queues, users, policies, alarms string
	// alarmsStatus is the HTTP status of the alarms health check.
	alarmsStatus int
}

func healthyCapture() captured {
	return captured{capturedOverview, capturedNodes, capturedQueues, capturedUsers, capturedPolicies, capturedAlarmsNone, http.StatusOK}
}

// serve answers the probe's requests with captured answers, so that the
// whole probe, HTTP and JSON included, runs against what RabbitMQ said.
func (c captured) serve(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	answer := func(path, body string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != AdminUser || p != "pw" {
				http.Error(w, `{"error":"not_authorised"}`, http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			if path == "/api/health/checks/alarms" {
				w.WriteHeader(c.alarmsStatus)
			}
			fmt.Fprint(w, body)
		})
	}
	answer("/api/overview", c.overview)
	answer("/api/nodes", c.nodes)
	answer("/api/queues", c.queues)
	answer("/api/users", c.users)
	answer("/api/policies", c.policies)
	answer("/api/health/checks/alarms", c.alarms)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func probeCaptured(t *testing.T, c captured, expected ...string) Status {
	t.Helper()
	st, err := Probe(context.Background(), ProbeOptions{URL: c.serve(t), User: AdminUser, Password: "pw", ExpectedNodes: expected})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestProbeCapturedHealthy(t *testing.T) {
	st := probeCaptured(t, healthyCapture(), "rabbit@localhost")
	if !st.Healthy || st.Problem != "" || len(st.Warnings) != 0 || st.RunningNodes != 1 || st.MissingNodes != nil ||
		st.GuestUser || st.Version != "3.10.8" || st.AnsweredBy != "rabbit@localhost" || st.ClusterName != "rabbit@vm" {
		t.Errorf("%+v", st)
	}
	n := st.Nodes[0]
	if !n.StatsReady || !n.Running || n.MemoryAlarm || n.DiskAlarm || len(n.Partitions) != 0 || n.FDTotal != 20000 ||
		n.DiskFreeLimit != 50000000 || n.Uptime != 161325*time.Millisecond {
		t.Errorf("node: %+v", n)
	}
	q := st.Queues
	if q.Total != 3 || q.ByType["classic"] != 2 || q.ByType["quorum"] != 1 || q.Counts != nil {
		t.Errorf("queues: %+v", q)
	}
}

func TestProbeCapturedMissingNode(t *testing.T) {
	// Expecting a second node that never joined: the bus is not whole, and
	// every replicated queue lacks its copy there.
	st := probeCaptured(t, healthyCapture(), "rabbit@localhost", "rabbit@ctl2")
	if st.Healthy || st.Problem != "rabbit@ctl2: not a member of this cluster" || fmt.Sprint(st.MissingNodes) != "[rabbit@ctl2]" {
		t.Errorf("%+v", st)
	}
	q := st.Queues
	if fmt.Sprint(q.QuorumLackingMembers) != "[q1]" || fmt.Sprint(q.MirroredLackingMirrors) != "[c1 (0 of 1) c2 (0 of 1)]" ||
		q.MirroredUnsynchronised != nil || q.QuorumMembersOffline != nil || q.QuorumNoLeader != nil {
		t.Errorf("queues: %+v", q)
	}
	want := []string{
		"1 quorum queues not on every node: q1",
		"2 mirrored queues short of mirrors: c1 (0 of 1), c2 (0 of 1)",
	}
	if fmt.Sprint(st.Warnings) != fmt.Sprint(want) {
		t.Errorf("warnings:\ngot  %q\nwant %q", st.Warnings, want)
	}
}

func TestProbeCapturedDiskAlarm(t *testing.T) {
	c := healthyCapture()
	c.nodes, c.alarms, c.alarmsStatus = capturedNodesDiskAlarm, capturedAlarmsDisk, http.StatusServiceUnavailable
	st := probeCaptured(t, c)
	const problem = "rabbit@localhost: disk alarm (84050161664 bytes free, limit 1000000000000000): publishers are blocked"
	if st.Healthy || st.Problem != problem || !st.Nodes[0].DiskAlarm || st.Nodes[0].MemoryAlarm {
		t.Errorf("%+v\nwant problem %q", st, problem)
	}

	// The node metrics lag: they may still show the alarm after it was
	// cleared (or not yet show a new one). The live health check wins.
	c.alarms, c.alarmsStatus = capturedAlarmsNone, http.StatusOK
	if st := probeCaptured(t, c); !st.Healthy {
		t.Errorf("alarm cleared, metrics stale: %+v", st)
	}
	c.nodes, c.alarms, c.alarmsStatus = capturedNodes, capturedAlarmsDisk, http.StatusServiceUnavailable
	if st := probeCaptured(t, c); st.Healthy || !st.Nodes[0].DiskAlarm {
		t.Errorf("alarm raised, metrics stale: %+v", st)
	}
}

func TestProbeCapturedJustStarted(t *testing.T) {
	c := healthyCapture()
	c.nodes = capturedNodesFresh
	st := probeCaptured(t, c)
	if st.Healthy || st.Nodes[0].StatsReady || !strings.Contains(st.Problem, "partitions unknown") {
		t.Errorf("%+v", st)
	}
}

func TestProbeCapturedGuestAndStrangers(t *testing.T) {
	c := healthyCapture()
	c.users = `[{"name":"guest"},{"name":"hastack"}]`
	st := probeCaptured(t, c, "rabbit@ctl1")
	if !st.GuestUser || !strings.Contains(strings.Join(st.Warnings, "\n"), "guest user exists") ||
		!strings.Contains(strings.Join(st.Warnings, "\n"), "rabbit@localhost: a member of the cluster that the spec does not name") {
		t.Errorf("%+v", st)
	}
}

func TestQueueSummaryReplicas(t *testing.T) {
	// Three nodes, one down: the shapes the API gives quorum and mirrored
	// queues then (fields as in the captures above).
	var queues []apiQueue
	if err := json.Unmarshal([]byte(`[
		{"name":"q.ok","vhost":"/","type":"quorum","state":"live","leader":"rabbit@a","members":["rabbit@a","rabbit@b","rabbit@c"],"online":["rabbit@a","rabbit@b","rabbit@c"]},
		{"name":"q.degraded","vhost":"/","type":"quorum","state":"live","leader":"rabbit@a","members":["rabbit@a","rabbit@b","rabbit@c"],"online":["rabbit@a","rabbit@b"]},
		{"name":"q.lost","vhost":"/","type":"quorum","state":"minority","leader":"","members":["rabbit@a","rabbit@b","rabbit@c"],"online":["rabbit@a"]},
		{"name":"c.unsynced","vhost":"/os","type":"classic","state":"live","policy":"ha","slave_nodes":["rabbit@b","rabbit@c"],"synchronised_slave_nodes":["rabbit@b"]},
		{"name":"reply_x","vhost":"/os","type":"classic","state":"live","policy":""}
	]`), &queues); err != nil {
		t.Fatal(err)
	}
	policies := []apiPolicy{{VHost: "/os", Name: "ha", Definition: map[string]any{"ha-mode": "all"}}}
	q := queueSummary(queues, []string{"rabbit@a", "rabbit@b", "rabbit@c"}, policies)
	got := fmt.Sprintf("%v|%v|%v|%v|%v|%v", q.NotRunning, q.QuorumNoLeader, q.QuorumMembersOffline, q.QuorumLackingMembers, q.MirroredLackingMirrors, q.MirroredUnsynchronised)
	const want = "[q.lost (minority)]|[q.lost]|[q.degraded q.lost]|[]|[]|[/os/c.unsynced]"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestProbeRefusedLogin(t *testing.T) {
	url := healthyCapture().serve(t)
	st, err := Probe(context.Background(), ProbeOptions{URL: url, User: AdminUser, Password: "wrong"})
	if err == nil || st.Healthy || !strings.Contains(st.Problem, "login refused") {
		t.Errorf("%+v, %v", st, err)
	}
}

// rabbitServer is one real RabbitMQ node, rabbit@localhost, on loopback
// ports of its own, with its own epmd, in a folder of its own.
type rabbitServer struct {
	url  string
	env  []string // for rabbitmqctl against this node
	cmd  *exec.Cmd
	epmd *exec.Cmd
	out  bytes.Buffer
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startRabbit boots RabbitMQ from the rendered definitions file (hastack's
// administrator, the OpenStack user, the mirrored-queue policy, no guest)
// and waits for the management API to report it healthy.
func startRabbit(t *testing.T) *rabbitServer {
	t.Helper()
	dir := t.TempDir()
	amqp, dist, mgmt, epmdPort := freePort(t), freePort(t), freePort(t), freePort(t)
	s := &rabbitServer{url: ManagementURL("127.0.0.1", mgmt)}

	c := &spec.Cluster{Spec: spec.ClusterSpec{RabbitMQ: spec.RabbitMQ{VHost: "/", User: "openstack", QueueType: spec.QueueMirrored}}}
	defs, err := Definitions(c, secrets.Fixed{secrets.RabbitAdminPassword: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	files := map[string]string{
		"definitions.json": string(defs),
		"enabled_plugins":  "[rabbitmq_management].\n",
		// Empty: keeps the rabbitmq-env script from reading the machine's
		// /etc/rabbitmq/rabbitmq-env.conf.
		"rabbitmq-env.conf": "",
		"rabbitmq.conf": fmt.Sprintf("listeners.tcp.1 = 127.0.0.1:%d\nmanagement.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %d\nload_definitions = %s\n",
			amqp, mgmt, filepath.Join(dir, "definitions.json")),
		// RABBITMQ_DIST_PORT alone listens on every address: pin the
		// distribution to loopback, as the rendered advanced.config pins
		// it to the management address.
		"advanced.config": "[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].\n",
	}
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The Erlang cookie is read from $HOME, and must be private.
	if err := os.WriteFile(filepath.Join(home, ".erlang.cookie"), []byte("HASTACKPROBETESTCOOKIE"), 0o400); err != nil {
		t.Fatal(err)
	}
	s.env = append(os.Environ(),
		"HOME="+home,
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"ERL_EPMD_PORT="+strconv.Itoa(epmdPort),
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_NODENAME=rabbit@localhost",
	)

	// An epmd of our own on a port of our own, in the foreground: the one
	// the VM would start for itself daemonizes and outlives the test.
	s.epmd = exec.Command("epmd", "-address", "127.0.0.1", "-port", strconv.Itoa(epmdPort))
	s.epmd.Stdout, s.epmd.Stderr = &s.out, &s.out
	if err := s.epmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.epmd.Process.Kill(); s.epmd.Wait() })

	// The package's own script, not Debian's /usr/sbin wrapper, which
	// switches to the rabbitmq user and its home.
	s.cmd = exec.Command("/usr/lib/rabbitmq/bin/rabbitmq-server")
	s.cmd.Env = append(s.env,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(amqp),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(dist),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_ADVANCED_CONFIG_FILE="+filepath.Join(dir, "advanced.config"),
	)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	// Its own process group: the script's shell, the VM and its helpers
	// are stopped together.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go s.cmd.Wait()
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("rabbitmq-server and epmd output:\n%s", s.out.String())
		}
	})

	// Boot takes seconds, and the metrics come a few seconds after that.
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for {
		st, err := Probe(ctx, ProbeOptions{URL: s.url, User: AdminUser, Password: "pw", ExpectedNodes: []string{"rabbit@localhost"}})
		if err == nil && st.Healthy {
			return s
		}
		if syscall.Kill(-s.cmd.Process.Pid, 0) != nil {
			t.Fatalf("rabbitmq-server exited while starting")
		}
		select {
		case <-ctx.Done():
			t.Fatalf("RabbitMQ not healthy in time: %+v, %v", st, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM (a clean stop) to the whole process group and waits
// until every process of it is gone: the script's shell exits first, the
// VM takes seconds more, and its folder must not be removed under it.
func (s *rabbitServer) stop(t *testing.T) {
	pgid := s.cmd.Process.Pid
	if syscall.Kill(-pgid, syscall.SIGTERM) != nil {
		return // already gone
	}
	deadline := time.Now().Add(60 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			t.Errorf("RabbitMQ did not stop on SIGTERM within 60 s; killing it")
			syscall.Kill(-pgid, syscall.SIGKILL)
			deadline = time.Now().Add(10 * time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// api sends one management API request, as the deploy's provisioning would.
func (s *rabbitServer) api(t *testing.T, method, path, body string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(AdminUser, "pw")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s", method, path, resp.Status)
	}
}

// ctl runs rabbitmqctl against the node: test set-up only, never a probe.
func (s *rabbitServer) ctl(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command("/usr/lib/rabbitmq/bin/rabbitmqctl", append([]string{"-n", "rabbit@localhost"}, args...)...)
	cmd.Env = s.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestIntegrationProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts a real RabbitMQ node (about 10 s) on loopback; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root; run as root, or use -short")
	}
	for _, bin := range []string{"/usr/lib/rabbitmq/bin/rabbitmq-server", "epmd"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed: run scripts/install-deps", bin)
		}
	}
	s := startRabbit(t)
	ctx := context.Background()
	o := ProbeOptions{URL: s.url, User: AdminUser, Password: "pw", ExpectedNodes: []string{"rabbit@localhost"}}

	st, err := Probe(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	// The definitions file creates users before the broker's default user
	// would be: no guest.
	if !st.Healthy || st.GuestUser || st.RunningNodes != 1 || st.AnsweredBy != "rabbit@localhost" ||
		!strings.HasPrefix(st.Version, "3.") || st.Queues.Total != 0 || len(st.Warnings) != 0 {
		t.Errorf("fresh node: %+v", st)
	}

	// A quorum queue, a queue the mirrored policy covers, and a reply queue
	// it leaves out (MirroredPattern).
	s.api(t, "PUT", "/api/queues/%2F/q.quorum", `{"durable":true,"arguments":{"x-queue-type":"quorum"}}`)
	s.api(t, "PUT", "/api/queues/%2F/c.mirrored", `{"durable":true}`)
	s.api(t, "PUT", "/api/queues/%2F/reply_0001", `{"durable":false}`)
	st, err = Probe(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Healthy || st.Queues.Total != 3 || st.Queues.ByType["quorum"] != 1 || st.Queues.ByType["classic"] != 2 || len(st.Warnings) != 0 {
		t.Errorf("with queues: %+v", st)
	}

	// A second expected node that is not there: unhealthy, and the
	// replicated queues (only those) lack their copy on it.
	o2 := o
	o2.ExpectedNodes = []string{"rabbit@localhost", "rabbit@ctl2"}
	st, err = Probe(ctx, o2)
	if err != nil {
		t.Fatal(err)
	}
	if st.Healthy || fmt.Sprint(st.MissingNodes) != "[rabbit@ctl2]" ||
		fmt.Sprint(st.Queues.QuorumLackingMembers) != "[q.quorum]" || fmt.Sprint(st.Queues.MirroredLackingMirrors) != "[c.mirrored (0 of 1)]" {
		t.Errorf("expecting a missing node: %+v", st)
	}

	// A disk alarm blocks every publisher: unhealthy at once (the health
	// check is live), healthy again once the limit is back.
	s.ctl(t, "set_disk_free_limit", "1000000GB")
	st, err = Probe(ctx, o)
	if err != nil || st.Healthy || !st.Nodes[0].DiskAlarm || !strings.Contains(st.Problem, "disk alarm") {
		t.Errorf("disk alarm: %+v, %v", st, err)
	}
	s.ctl(t, "set_disk_free_limit", "50MB")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if st, err = Probe(ctx, o); err == nil && st.Healthy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("disk alarm not cleared: %+v, %v", st, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	s.api(t, "PUT", "/api/users/guest", `{"password":"guest","tags":"administrator"}`)
	if st, err = Probe(ctx, o); err != nil || !st.Healthy || !st.GuestUser || len(st.Warnings) != 1 {
		t.Errorf("guest created: %+v, %v; want healthy with one warning", st, err)
	}

	bad := o
	bad.Password = "wrong"
	if st, err := Probe(ctx, bad); err == nil || st.Healthy || !strings.Contains(st.Problem, "login refused") {
		t.Errorf("wrong password: %+v, %v", st, err)
	}

	s.stop(t)
	if st, err := Probe(ctx, o); err == nil || st.Healthy || st.Problem == "" {
		t.Errorf("stopped: %+v, %v; want an error", st, err)
	}
}

func TestLastSaying(t *testing.T) {
	for _, c := range []struct{ tail, want string }{
		{"", "(nothing yet)"},
		{"2026-12-03 15:27:57.324864+00:00 [info] <0.223.0> Waiting for Mnesia tables\n", "[info] Waiting for Mnesia tables"},
		{"2026-12-03 15:27:57.324864+00:00 [notice] <0.1044.0> Global hang workaround\n2026-12-03 15:27:57.324864+00:00 [notice] <0.1044.0> \n2026-12-03 15:27:57.324864+00:00 [notice] <0.1044.0>\n", "[notice] Global hang workaround"},
		{"a line of its own\n", "a line of its own"},
	} {
		if got := lastSaying(c.tail); got != c.want {
			t.Errorf("lastSaying(%q) = %q, want %q", c.tail, got, c.want)
		}
	}
}
