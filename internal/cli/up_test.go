package cli

import (
	"database/sql"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"gopkg.in/yaml.v3"

	"github.com/hastack/hastack/internal/deploy"
)

// TestIntegrationUp is the main job end to end on a lab of the default
// shape (3 controllers, 1 compute): lab up -> up -> status healthy -> a
// second up changes nothing -> a killed engine is degraded and 'up' brings
// it back -> lab down leaves nothing.
func TestIntegrationUp(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: deploys every engine on a lab; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root")
	}
	dir, _ := testLab(t, "uptest", "hd", 3, 1, "10.221", "10.222")
	hs := func(args ...string) (string, string, int) {
		t.Helper()
		o, e, code := runIn(t, dir, "", args...)
		t.Logf("hastack %s: exit %d\n%s%s", strings.Join(args, " "), code, o, e)
		return o, e, code
	}
	labDownAfter(t, dir)

	if _, _, code := hs("up"); code != 1 {
		t.Errorf("up with no lab: exit %d, want 1", code)
	}
	if _, _, code := hs("lab", "up"); code != 0 {
		t.Fatal("lab up failed")
	}
	// A port an engine needs, taken by another program: 'up' names it and
	// starts nothing.
	if _, _, code := hs("lab", "exec", "ctl2", "--", "sh", "-c", "setsid socat TCP-LISTEN:11211,bind=10.221.0.12,fork,reuseaddr EXEC:/bin/true >/dev/null 2>&1 < /dev/null &"); code != 0 {
		t.Fatal("could not start the squatter")
	}
	waitListening(t, "10.221.0.12:11211")
	_, e, code := hs("up")
	if code != 1 || !strings.Contains(e, "port 11211 (for memcached) is held by socat") || !strings.Contains(e, "ctl2") {
		t.Errorf("up with a port taken: exit %d", code)
	}
	hs("lab", "fault", "kill", "ctl2", "socat")
	if _, err := os.Stat(filepath.Join(dir, "hastack.secrets.yaml")); err != nil {
		t.Errorf("the secrets phase before ports should have run: %v", err)
	}

	dryOut, _, code := hs("up", "--dry-run")
	if code != 0 || !strings.Contains(dryOut, "would bootstrap a new Galera cluster") || !strings.Contains(dryOut, "nothing was changed") {
		t.Errorf("dry run: exit %d", code)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "hastack.secrets.yaml"))
	if _, _, code := hs("up", "--dry-run"); code != 0 {
		t.Errorf("second dry run: exit %d", code)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "hastack.secrets.yaml")); string(after) != string(before) {
		t.Error("a dry run changed the secrets file")
	}

	o, _, code := hs("up")
	if code != 0 || !strings.Contains(o, "up: done") {
		t.Fatalf("up: exit %d", code)
	}
	fi, err := os.Stat(filepath.Join(dir, "hastack.secrets.yaml"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file: %v %v", err, fi)
	}
	secretsData, _ := os.ReadFile(filepath.Join(dir, "hastack.secrets.yaml"))
	var sf struct{ Secrets map[string]string }
	if err := yaml.Unmarshal(secretsData, &sf); err != nil || len(sf.Secrets) == 0 {
		t.Fatalf("secrets file unreadable: %v", err)
	}
	noSecrets := func(what, out string) {
		for k, v := range sf.Secrets {
			if strings.Contains(out, v) {
				t.Errorf("%s prints the secret %s", what, k)
			}
		}
	}
	noSecrets("up", o)
	// The dry run ran with the secrets already generated (the secrets
	// phase ran before the ports refusal): its plan must not print them.
	noSecrets("up --dry-run", dryOut)

	o, _, code = hs("status", "-o", "json")
	if code != 0 {
		t.Errorf("status after up: exit %d", code)
	}
	var rep struct {
		Writer   string                              `json:"writer"`
		Healthy  bool                                `json:"healthy"`
		Services map[string][]map[string]interface{} `json:"services"`
	}
	if err := json.Unmarshal([]byte(o), &rep); err != nil {
		t.Fatalf("status -o json: %v", err)
	}
	if !rep.Healthy {
		t.Error("status -o json: not healthy")
	}
	want := map[string]int{"galera": 3, "rabbitmq": 3, "memcached": 3, "ntp": 4, "endpoint": 3}
	for svc, n := range want {
		entries := rep.Services[svc]
		if len(entries) != n {
			t.Errorf("status: %s has %d entries, want %d", svc, len(entries), n)
		}
		for _, e := range entries {
			if e["node"] == "" || e["healthy"] != true {
				t.Errorf("status: %s entry %v not healthy", svc, e)
			}
		}
	}
	noSecrets("status", o)

	o, _, code = hs("up")
	if code != 0 || !strings.Contains(o, "nothing changed") {
		t.Errorf("second up: exit %d, want it to change nothing", code)
	}
	o, _, code = hs("up", "--dry-run")
	if code != 0 || !strings.Contains(o, "plan: nothing to do") {
		t.Errorf("dry run after up: exit %d", code)
	}
	noSecrets("up --dry-run", o)

	// Another hastack holds the cluster lock (here: a holder on another
	// machine, written on ctl2): 'up' refuses and names it; --break-lock
	// removes it and goes on; the lock is gone when 'up' ends.
	foreign := `{"command":"up","user":"ops","host":"elsewhere","bootId":"b","pid":77,"since":"2026-01-02T03:04:05Z","token":"t"}`
	if _, _, code := hs("lab", "exec", "ctl2", "--", "sh", "-c", "mkdir -p /var/lib/hastack && echo '"+foreign+"' > "+deploy.LockPath); code != 0 {
		t.Fatal("could not write a lock")
	}
	if _, e, code := hs("up"); code != 1 || !strings.Contains(e, "locked by 'hastack up' (pid 77 on elsewhere, user ops) since 2026-01-02T03:04:05Z") {
		t.Errorf("up with the cluster locked: exit %d: %s", code, e)
	}
	if o, e, code := hs("up", "--break-lock"); code != 0 || !strings.Contains(o, "ctl2: removed the lock of 'hastack up' (pid 77 on elsewhere") {
		t.Errorf("up --break-lock: exit %d: %s%s", code, o, e)
	}
	for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
		if _, _, code := hs("lab", "exec", n, "--", "test", "-e", deploy.LockPath); code == 0 {
			t.Errorf("%s still holds a lock after up ended", n)
		}
	}

	// A lost secrets file: 'up' must not make new secrets for a cluster
	// that has data; it refuses before changing anything, and names what
	// it found.
	secretsPath := filepath.Join(dir, "hastack.secrets.yaml")
	if err := os.Rename(secretsPath, secretsPath+".away"); err != nil {
		t.Fatal(err)
	}
	_, e, code = hs("up")
	if code != 1 || !strings.Contains(e, "ctl1 has Galera data (/var/lib/mysql/grastate.dat)") || !strings.Contains(e, "a RabbitMQ node database (/var/lib/rabbitmq/mnesia/rabbit@ctl") || !strings.Contains(e, "Restore the secrets file") {
		t.Errorf("up without the secrets file of a deployed cluster: exit %d, want 1 and a refusal naming the data found", code)
	}
	if _, err := os.Stat(secretsPath); err == nil {
		t.Error("up wrote a new secrets file for a deployed cluster")
	}
	if err := os.Rename(secretsPath+".away", secretsPath); err != nil {
		t.Fatal(err)
	}

	// A killed engine: degraded, and 'up' brings it back.
	if _, _, code := hs("lab", "fault", "kill", "ctl2", "mariadb"); code != 0 {
		t.Fatal("fault kill failed")
	}
	if _, _, code := hs("lab", "fault", "kill", "ctl3", "memcached"); code != 0 {
		t.Fatal("fault kill failed")
	}
	if _, _, code := hs("status"); code != 1 {
		t.Errorf("status with one database and one cache down: exit %d, want 1 (degraded, serving)", code)
	}
	o, _, code = hs("up")
	if code != 0 || !strings.Contains(o, "[galera] ctl2: start mariadb and join the running cluster") || !strings.Contains(o, "[memcached] ctl3") {
		t.Errorf("up after kills: exit %d", code)
	}
	if strings.Contains(o, "[galera] ctl1") || strings.Contains(o, "[rabbitmq] ctl") && strings.Contains(o, "restart") {
		t.Errorf("up after kills touched nodes that were fine")
	}
	o, _, code = hs("status", "-o", "json")
	if code != 0 {
		t.Errorf("status after repair: exit %d", code)
	}
	writerBefore := rep.Writer
	if err := json.Unmarshal([]byte(o), &rep); err != nil {
		t.Fatal(err)
	}
	// ctl2 rejoined with a donor other than the writer, so the writes
	// stayed where they were.
	if rep.Writer == "" || rep.Writer != writerBefore {
		t.Errorf("writer before the kill %q, after the repair %q", writerBefore, rep.Writer)
	}

	// A chronyd that dropped its samples (as after a frozen node or a
	// clock jump; here 'chronyc reset sources') follows no source until
	// its next regular poll, a minute or more away. 'up' asks it to poll
	// now and is healthy in seconds instead of waiting out its verify.
	if _, _, code := hs("lab", "exec", "cmp1", "--", "chronyc", "reset", "sources"); code != 0 {
		t.Fatal("chronyc reset sources failed")
	}
	if o, _, code := hs("status"); code != 1 || !strings.Contains(o, "ntp cmp1: not synchronised") {
		t.Errorf("status after cmp1's time sources were reset: exit %d, want 1 naming cmp1's clock", code)
	}
	o, _, code = hs("up")
	if code != 0 || !strings.Contains(o, "[chrony] cmp1: ask chronyd to poll its sources now (chronyc burst 4/4)") {
		t.Errorf("up after cmp1's time sources were reset: exit %d, want a burst on cmp1 and a healthy cluster", code)
	}

	// A power cut: every process on every controller killed at once. No
	// Galera node stopped cleanly; 'up' recovers each one's position,
	// bootstraps from the most advanced and joins the others.
	for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
		if _, _, code := hs("lab", "fault", "kill", n); code != 0 {
			t.Fatalf("fault kill %s failed", n)
		}
	}
	if _, _, code := hs("status"); code != 2 {
		t.Errorf("status with every controller down: exit %d, want 2 (not serving)", code)
	}
	o, _, code = hs("up")
	if code != 0 || !strings.Contains(o, "then bootstrap from the most advanced") {
		t.Fatalf("up after a power cut: exit %d", code)
	}
	if _, _, code := hs("status"); code != 0 {
		t.Errorf("status after recovery: exit %d", code)
	}

	// Snapshots with the HA layer deployed: a database made after the
	// snapshot is gone after the rollback, and the layer is healthy again.
	if _, _, code := hs("lab", "snapshot", "deployed"); code != 0 {
		t.Fatal("snapshot with the layer deployed failed")
	}
	if _, _, code := hs("status"); code != 0 {
		t.Errorf("status after snapshot: exit %d", code)
	}
	vip := "10.221.0.10:3306"
	db, err := sql.Open("mysql", "hastack:"+sf.Secrets["database/hastack"]+"@tcp("+vip+")/?timeout=5s")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE after_snapshot"); err != nil {
		t.Fatalf("writing through the VIP: %v", err)
	}
	db.Close()
	if _, _, code := hs("lab", "rollback", "deployed"); code != 0 {
		t.Fatal("rollback with the layer deployed failed")
	}
	db, _ = sql.Open("mysql", "hastack:"+sf.Secrets["database/hastack"]+"@tcp("+vip+")/?timeout=5s")
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name='after_snapshot'").Scan(&n); err != nil || n != 0 {
		t.Errorf("after rollback: database made after the snapshot: count %d, %v", n, err)
	}
	if _, _, code := hs("status"); code != 0 {
		t.Errorf("status after rollback: exit %d", code)
	}

	if _, _, code := hs("lab", "down"); code != 0 {
		t.Fatal("lab down failed")
	}
	if pids := markedNodeInits("hd"); len(pids) > 0 {
		t.Errorf("node processes left after lab down: %v", pids)
	}
	if ents, _ := filepath.Glob("/run/netns/hd-*"); len(ents) > 0 {
		t.Errorf("network namespaces left after lab down: %v", ents)
	}
}

func markedNodeInits(prefix string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(data), "hastack-lab-node:"+prefix+":") {
			out = append(out, e.Name())
		}
	}
	return out
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}
