package galera

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/engine/endpoint"
)

// check asks the agent as HAProxy does (GET /) and returns code and body.
func check(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestAgentRefusesWhenDatabaseIsDown(t *testing.T) {
	var logs bytes.Buffer
	a := &Agent{
		Options: ProbeOptions{Socket: filepath.Join(t.TempDir(), "mysqld.sock"), User: "root"},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	for range 3 {
		code, body := check(t, srv.URL+"/")
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "cannot ask MariaDB") {
			t.Errorf("database down: %d %q; want 503 with the reason", code, body)
		}
	}
	if n := strings.Count(logs.String(), "galera health"); n != 1 {
		t.Errorf("logged %d lines for one unchanged verdict, want 1:\n%s", n, logs.String())
	}

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}

func TestIntegrationAgent(t *testing.T) {
	integration(t)
	s := startGalera(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- (&Agent{Options: ProbeOptions{Socket: s.socket, User: "root"}}).Serve(ctx, ln)
	}()
	url := "http://" + ln.Addr().String() + "/"

	// The server changes state asynchronously (wsrep_desync=OFF returns
	// to Synced once the node has caught up), so each step waits, within a
	// generous bound, for the answer it expects.
	want := func(step string, code int, bodyHas string) {
		t.Helper()
		var got int
		var body string
		for deadline := time.Now().Add(15 * time.Second); ; {
			got, body = check(t, url)
			if got == code && strings.Contains(body, bodyHas) {
				return
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("%s: %d %q; want %d containing %q", step, got, body, code, bodyHas)
	}
	want("synced", http.StatusOK, SyncedBody)
	s.exec(t, "SET GLOBAL wsrep_desync=ON")
	want("desynced", http.StatusServiceUnavailable, "Donor/Desynced")
	s.exec(t, "SET GLOBAL wsrep_desync=OFF")
	want("synced again", http.StatusOK, SyncedBody)
	s.exec(t, "SET GLOBAL read_only=ON")
	want("read_only", http.StatusServiceUnavailable, "read_only=ON")
	s.exec(t, "SET GLOBAL read_only=OFF")
	want("writable again", http.StatusOK, SyncedBody)

	// The real consumer: HAProxy with the rendered check settings marks the
	// node UP on the agent's word, carries SQL to it, and marks it DOWN
	// when the agent refuses.
	front, stats := startHAProxy(t, s.addr, ln.Addr().String())
	serverIs := func(step, status string) {
		t.Helper()
		var st endpoint.Status
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if st, err = endpoint.Probe(context.Background(), stats); err == nil && len(st.Servers) == 1 && st.Servers[0].Status == status {
				return
			}
		}
		t.Fatalf("%s: HAProxy does not see the node %s: %+v, %v", step, status, st, err)
	}
	serverIs("synced", "UP")
	s.exec(t, "CREATE USER 'hastack'@'127.0.0.1' IDENTIFIED BY 'probe-secret'")
	if st, err := Probe(context.Background(), ProbeOptions{Address: front, User: "hastack", Password: "probe-secret"}); err != nil || !st.Healthy {
		t.Errorf("probe through HAProxy: %+v, %v", st, err)
	}
	s.exec(t, "SET GLOBAL wsrep_desync=ON")
	serverIs("desynced", "DOWN")
	s.exec(t, "SET GLOBAL wsrep_desync=OFF")
	serverIs("synced again", "UP")

	s.stop(t)
	want("stopped", http.StatusServiceUnavailable, "cannot ask MariaDB")

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
}

// startHAProxy runs haproxy with the galera proxy's check settings as
// rendered (option httpchk GET /, expect status 200, check port = the
// agent's), checking every 200 ms instead of 1 s, and a stats listener. It
// returns the proxy's and the stats listener's addresses.
func startHAProxy(t *testing.T, db, agent string) (front, stats string) {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy is not installed: run scripts/install-deps")
	}
	front = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	stats = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, agentPort, _ := net.SplitHostPort(agent)
	cfg := fmt.Sprintf(`defaults
    mode tcp
    timeout connect 3s
    timeout client 60s
    timeout server 60s
    timeout check 2s

listen %s
    bind %s
    balance first
    option httpchk GET /
    http-check expect status 200
    default-server check port %s inter 200ms fall 2 rise 3 on-marked-down shutdown-sessions
    server ctl1 %s

listen stats
    mode http
    bind %s
    stats enable
    stats uri /
`, endpoint.Backend, front, agentPort, db, stats)
	file := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("haproxy", "-db", "-f", file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	return front, stats
}
