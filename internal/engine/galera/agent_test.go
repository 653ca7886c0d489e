package galera

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

	want := func(step string, code int, bodyHas string) {
		t.Helper()
		got, body := check(t, url)
		if got != code || !strings.Contains(body, bodyHas) {
			t.Errorf("%s: %d %q; want %d containing %q", step, got, body, code, bodyHas)
		}
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
