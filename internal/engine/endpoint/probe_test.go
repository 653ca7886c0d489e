package endpoint

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// HAProxy 2.6.12's stats CSV ("/;csv"), captured on this project's test
// machine during TestIntegrationProbe; the rows of the stats proxy itself
// are left out. Just after start, ctl3 not checked yet:
const capturedStart = `# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
galera,FRONTEND,,,0,0,100,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,1,0,,,,0,0,0,0,,,,,,,,,,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,tcp,,0,0,0,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
galera,ctl1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,0,0,,1,1,1,,0,,2,0,,0,L7OK,200,0,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,3,2,4,,,,,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
galera,ctl2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,0,0,,1,1,2,,0,,2,0,,0,L7OK,200,0,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,3,2,4,,,,,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
galera,ctl3,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP 1/2,1,1,0,0,0,0,0,,1,1,3,,0,,2,0,,0,INI,,,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,Initializing,,3,2,3,,,,,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
galera,BACKEND,0,0,0,0,10,0,0,0,0,0,,0,0,0,0,UP,3,3,0,,0,0,0,,1,1,0,,0,,1,0,,0,,,,,,,,,,,,,,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,tcp,,,,,,,,0,0,0,,,,,0,0,0,0,0,,,,,3,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,2,278,36,0,0,
`

// ctl1 refused by its agent, the client reconnected to ctl2:
const capturedFailover = `# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
galera,FRONTEND,,,1,1,100,2,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,1,0,,,,0,2,0,2,,,,,,,,,,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,tcp,,2,2,2,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
galera,ctl1,0,0,0,1,,1,0,0,,0,,0,0,0,0,DOWN,1,1,0,2,1,0,0,,1,1,1,,1,,2,1,,1,L7STS,503,0,,,,,,,,,,,0,0,,,,,1,Service Unavailable,,0,0,0,334,,,,Layer7 wrong status,,3,2,0,,,,,,tcp,,,,,,,,0,1,0,,,0,,0,0,0,334,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
galera,ctl2,0,0,1,1,,1,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,1,0,,1,1,2,,1,,2,1,,1,L7OK,200,0,,,,,,,,,,,0,0,,,,,0,,,0,0,0,0,,,,Layer7 check passed,,3,2,4,,,,,,tcp,,,,,,,,0,1,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
galera,ctl3,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,1,0,,1,1,3,,0,,2,0,,0,L7OK,200,0,,,,,,,,,,,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,3,2,4,,,,,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
galera,BACKEND,0,0,1,1,10,2,0,0,0,0,,0,0,0,0,UP,2,2,0,,0,1,0,,1,1,0,,2,,1,2,,2,,,,,,,,,,,,,,0,0,0,0,0,0,0,,,0,0,0,167,,,,,,,,,,,,,,tcp,,,,,,,,0,2,0,,,,,0,0,0,334,0,,,,,2,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,8,8,1264,144,0,0,
`

// every agent refusing:
const capturedAllDown = `# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
galera,FRONTEND,,,0,2,100,3,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,1,0,,,,0,2,0,2,,,,,,,,,,,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,,,,,,,,tcp,,2,2,3,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
galera,ctl1,0,0,0,1,,1,0,0,,0,,0,0,0,0,DOWN,1,1,0,4,2,0,0,,1,1,1,,1,,2,1,,1,L7STS,503,0,,,,,,,,,,,0,0,,,,,2,Service Unavailable,,0,0,0,334,,,,Layer7 wrong status,,3,2,0,,,,,,tcp,,,,,,,,0,1,0,,,0,,0,0,0,334,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
galera,ctl2,0,0,0,2,,2,0,0,,0,,0,0,0,0,DOWN,1,1,0,2,1,0,0,,1,1,2,,1,,2,1,,2,L7STS,503,0,,,,,,,,,,,0,0,,,,,1,Service Unavailable,,0,0,0,1391,,,,Layer7 wrong status,,3,2,0,,,,,,tcp,,,,,,,,0,2,0,,,0,,0,0,0,1000,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
galera,ctl3,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,2,1,1,1,,1,1,3,,0,,2,0,,0,L7STS,503,0,,,,,,,,,,,0,0,,,,,-1,Service Unavailable,,0,0,0,0,,,,Layer7 wrong status,,3,2,0,,,,,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
galera,BACKEND,0,0,0,2,10,3,0,0,0,0,,0,0,0,0,DOWN,0,0,0,,1,0,0,,1,1,0,,2,,1,2,,2,,,,,,,,,,,,,,0,0,0,0,0,0,1,,,0,0,0,863,,,,,,,,,,,,,,tcp,,,,,,,,0,3,0,,,,,0,0,0,1000,0,,,,,0,0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,23,23,3805,414,0,0,
`

func parseCaptured(t *testing.T, s string) Status {
	t.Helper()
	rows, err := ParseStatsCSV(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return backendStatus("stats", Backend, rows)
}

func TestStatusFromCapturedCSV(t *testing.T) {
	st := parseCaptured(t, capturedStart)
	if !st.Healthy || st.Up != 3 || st.Active != "ctl1" || st.ActiveBy != ActiveByOrder || len(st.Servers) != 3 {
		t.Errorf("start: %+v", st)
	}
	if s := st.Servers[2]; s.Status != "UP 1/2" || !s.Up || s.CheckStatus != "INI" {
		t.Errorf("start, unchecked ctl3: %+v", s)
	}

	st = parseCaptured(t, capturedFailover)
	want := Server{Name: "ctl1", Status: "DOWN", CheckStatus: "L7STS", CheckCode: 503, LastCheck: "Service Unavailable",
		TotalSessions: 1, Downs: 1}
	if st.Servers[0] != want {
		t.Errorf("failover, ctl1:\ngot  %+v\nwant %+v", st.Servers[0], want)
	}
	if !st.Healthy || st.Up != 2 || st.Active != "ctl2" || st.ActiveBy != ActiveBySessions || st.Sessions != 1 ||
		!st.Servers[1].Active || st.Servers[1].CurrentSessions != 1 || st.Servers[0].Active || st.Servers[2].Active {
		t.Errorf("failover: %+v", st)
	}

	st = parseCaptured(t, capturedAllDown)
	const problem = "no database server is UP, the endpoint refuses connections: " +
		"ctl1 DOWN (L7STS 503: Service Unavailable), ctl2 DOWN (L7STS 503: Service Unavailable), ctl3 DOWN (L7STS 503: Service Unavailable)"
	if st.Healthy || st.Up != 0 || st.Active != "" || st.ActiveBy != "" || st.Problem != problem {
		t.Errorf("all down: %+v\nwant problem %q", st, problem)
	}
}

func TestStatusOfAnotherConfiguration(t *testing.T) {
	st := parseCaptured(t, strings.ReplaceAll(capturedStart, "galera,", "mysql,"))
	if st.Healthy || !strings.Contains(st.Problem, `no proxy "galera"`) {
		t.Errorf("no galera proxy: %+v", st)
	}
}

func TestProbeRefusesWhatIsNotTheCSV(t *testing.T) {
	// The HTML stats page (a wrong URI), then an error page.
	for _, h := range []http.HandlerFunc{
		func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "<html><body>Statistics Report</body></html>")
		},
		func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) },
	} {
		srv := httptest.NewServer(h)
		st, err := Probe(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
		srv.Close()
		if err == nil || st.Healthy || st.Problem == "" {
			t.Errorf("got %+v, %v; want an error", st, err)
		}
	}
}

func TestIntegrationProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: starts a real haproxy on loopback; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root; run as root, or use -short")
	}
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy is not installed: run scripts/install-deps")
	}
	dbs := []*fakeGalera{startFakeGalera(t), startFakeGalera(t), startFakeGalera(t)}
	h := startHAProxy(t, dbs)
	ctx := context.Background()

	// HAProxy starts every server UP, before its first check ("UP 1/2",
	// check INI); wait for each to have passed one.
	st := waitFor(t, h.stats, "every server checked UP", func(st Status) bool {
		for _, s := range st.Servers {
			if s.CheckStatus != "L7OK" {
				return false
			}
		}
		return st.Up == 3
	})
	if !st.Healthy || st.Active != "ctl1" || st.ActiveBy != ActiveByOrder || st.Sessions != 0 {
		t.Errorf("all up, idle: %+v", st)
	}

	// A client connects through the endpoint: it lands on ctl1.
	c1 := dial(t, h.endpoint)
	// HAProxy counts the session when it picks the server; the fake
	// database counts it when its accept goroutine runs: wait for both.
	st = waitFor(t, h.stats, "a session on ctl1", func(st Status) bool { return st.Sessions == 1 && serverSessions(st) == 1 && dbs[0].conns.Load() == 1 })
	if st.Active != "ctl1" || st.ActiveBy != ActiveBySessions || st.Servers[0].CurrentSessions != 1 || dbs[0].conns.Load() != 1 {
		t.Errorf("one client: %+v", st)
	}

	// ctl1's agent says no: HAProxy marks it DOWN, cuts its sessions
	// (on-marked-down shutdown-sessions) and the client's reconnect lands
	// on ctl2.
	dbs[0].healthy.Store(false)
	st = waitFor(t, h.stats, "ctl1 DOWN", func(st Status) bool { return !st.Servers[0].Up })
	if st.Servers[0].CheckStatus != "L7STS" || st.Servers[0].CheckCode != http.StatusServiceUnavailable || st.Servers[0].Downs != 1 {
		t.Errorf("ctl1 refused by its agent: %+v", st.Servers[0])
	}
	if _, err := c1.Read(make([]byte, 1)); err == nil {
		t.Error("the session to the failed server was not cut")
	}
	c1.Close()
	c2 := dial(t, h.endpoint)
	defer c2.Close()
	st = waitFor(t, h.stats, "the session on ctl2", func(st Status) bool { return st.Sessions == 1 && serverSessions(st) == 1 })
	if st.Active != "ctl2" || !st.Healthy || st.Up != 2 {
		t.Errorf("after failover: %+v", st)
	}

	// ctl1 comes back. The stick table keeps writes on ctl2: one switch per
	// failure, not two. A new connection goes to ctl2 as well.
	dbs[0].healthy.Store(true)
	waitFor(t, h.stats, "ctl1 UP again", func(st Status) bool { return st.Servers[0].Up })
	c3 := dial(t, h.endpoint)
	defer c3.Close()
	// The backend counts a session before HAProxy has given it a server
	// (failed CI once: backend 2, servers 1): wait for the servers' count.
	st = waitFor(t, h.stats, "two sessions on servers", func(st Status) bool { return st.Sessions == 2 && serverSessions(st) == 2 })
	if st.Active != "ctl2" || st.Servers[1].CurrentSessions != 2 || st.Servers[0].CurrentSessions != 0 {
		t.Errorf("after ctl1's return: %+v", st)
	}

	// No server passes: the endpoint is down, and says why.
	for _, db := range dbs {
		db.healthy.Store(false)
	}
	st = waitFor(t, h.stats, "every server DOWN", func(st Status) bool { return st.Up == 0 })
	if st.Healthy || st.Active != "" || !strings.Contains(st.Problem, "no database server is UP") || !strings.Contains(st.Problem, "ctl3 DOWN") {
		t.Errorf("all down: %+v", st)
	}

	h.stop()
	if st, err := Probe(ctx, h.stats); err == nil || st.Healthy || st.Problem == "" {
		t.Errorf("haproxy stopped: %+v, %v; want an error", st, err)
	}
}

// waitFor probes until cond holds. HAProxy checks every 200 ms here, so
// every transition comes within a second or two; the deadline is generous
// for a loaded machine.
func waitFor(t *testing.T, stats, what string, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := Probe(context.Background(), stats)
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %+v, %v", what, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fakeGalera stands in for one controller's database and health agent:
// a TCP listener that holds connections open, and an HTTP check that
// answers as hastack's agent does. HAProxy, the engine under test, is real.
type fakeGalera struct {
	db, check string
	healthy   atomic.Bool
	conns     atomic.Int32
}

func startFakeGalera(t *testing.T) *fakeGalera {
	t.Helper()
	f := &fakeGalera{}
	f.healthy.Store(true)
	db, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db.Addr().String()
	go func() {
		for {
			c, err := db.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	check, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.check = check.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.healthy.Load() {
			fmt.Fprintln(w, "Galera node is synced")
			return
		}
		http.Error(w, "Galera node is not ready for writes: not Synced", http.StatusServiceUnavailable)
	})}
	go srv.Serve(check)
	t.Cleanup(func() { srv.Close() })
	return f
}

type haproxy struct {
	endpoint, stats string
	cmd             *exec.Cmd
	exited          chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startHAProxy runs haproxy with the galera and stats proxies of the
// rendered haproxy.cfg, on loopback, with checks every 200 ms instead of 1 s
// and no peers section (one HAProxy has no one to share the table with).
func startHAProxy(t *testing.T, dbs []*fakeGalera) *haproxy {
	t.Helper()
	h := &haproxy{endpoint: freeAddr(t), stats: freeAddr(t), exited: make(chan struct{})}
	var servers strings.Builder
	for i, db := range dbs {
		_, port, _ := net.SplitHostPort(db.check)
		fmt.Fprintf(&servers, "    server ctl%d %s check port %s\n", i+1, db.db, port)
	}
	cfg := fmt.Sprintf(`global
    maxconn 100

defaults
    mode tcp
    timeout connect 3s
    timeout client 3600s
    timeout server 3600s
    timeout check 2s

listen %s
    bind %s
    balance first
    stick-table type ip size 1
    stick on dst
    option httpchk GET /
    http-check expect status 200
    default-server inter 200ms fall 2 rise 3 on-marked-down shutdown-sessions
%s
listen stats
    mode http
    bind %s
    stats enable
    stats uri /
    stats refresh 5s
`, Backend, h.endpoint, servers.String(), h.stats)
	dir := t.TempDir()
	file := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// -db: stay in the foreground, no daemon; -W off: a single process.
	h.cmd = exec.Command("haproxy", "-db", "-f", file)
	var out strings.Builder
	h.cmd.Stdout, h.cmd.Stderr = &out, &out
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.cmd.Wait(); close(h.exited) }()
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("haproxy.cfg:\n%s\nhaproxy output:\n%s", cfg, out.String())
		}
	})
	select {
	case <-h.exited:
		t.Fatalf("haproxy exited: %v\n%s", h.cmd.ProcessState, out.String())
	case <-time.After(100 * time.Millisecond):
	}
	return h
}

func (h *haproxy) stop() {
	select {
	case <-h.exited:
		return
	default:
	}
	// SIGUSR1 is HAProxy's soft stop (wait for sessions); SIGTERM is the
	// hard stop, which is what a test wants.
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		h.cmd.Process.Kill()
		<-h.exited
	}
}

// serverSessions sums the sessions HAProxy has given to a server.
func serverSessions(st Status) int {
	n := 0
	for _, s := range st.Servers {
		n += s.CurrentSessions
	}
	return n
}
