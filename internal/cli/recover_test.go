package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/engine/galera"
)

// TestIntegrationRecoverGalera breaks a real three-node Galera cluster on a
// lab in the ways the established tools got wrong, and checks after each
// recovery that every acknowledged write is on every node:
//   - every node killed, a stale node carrying a safe_to_bootstrap marker:
//     not chosen over the more advanced crashed nodes;
//   - a recovery decision already written (an interrupted recovery): resumed
//     with the same node;
//   - a wiped node: never chosen, rejoins by SST;
//   - a foreign history: refused, nothing started;
//   - one survivor without a Primary component: 'up' refuses, 'recover'
//     promotes it once the others are confirmed down;
//   - a healthy cluster: nothing to do.
func TestIntegrationRecoverGalera(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: makes a lab and runs MariaDB Galera; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root")
	}
	dir, _ := testLab(t, "rec", "hr", 3, 0, "10.251", "10.252")
	run := func(args ...string) (string, string, int) {
		t.Helper()
		o, e, code := runIn(t, dir, "", args...)
		t.Logf("hastack %s: exit %d\n%s%s", strings.Join(args, " "), code, o, e)
		return o, e, code
	}
	labDownAfter(t, dir)
	if _, _, code := run("lab", "up"); code != 0 {
		t.Fatal("lab up failed")
	}
	// The secrets (render generates them), then a new cluster: recover on a
	// cluster that never ran bootstraps it as 'up' would.
	if _, _, code := run("render", "--out", "rendered"); code != 0 {
		t.Fatal("render failed")
	}
	if o, _, code := run("recover", "galera"); code != 0 || !strings.Contains(o, "bootstrap a new Galera cluster") {
		t.Fatalf("recover on a new lab: exit %d", code)
	}
	ctls := []string{"ctl1", "ctl2", "ctl3"}
	sql := func(nodeName, stmt string) (string, bool) {
		t.Helper()
		o, _, code := runIn(t, dir, "", "lab", "exec", nodeName, "--", "mariadb", "-N", "-B", "-e", stmt)
		return strings.TrimSpace(o), code == 0
	}
	acked := 0
	write := func(on string, n int) {
		t.Helper()
		for range n {
			if _, ok := sql(on, fmt.Sprintf("INSERT INTO rt.acked VALUES (%d)", acked+1)); !ok {
				t.Fatalf("insert %d on %s refused", acked+1, on)
			}
			acked++
		}
	}
	// Every acknowledged write is on every node, and every node is Synced.
	verify := func(when string) {
		t.Helper()
		for _, n := range ctls {
			var got string
			deadline := time.Now().Add(60 * time.Second)
			for {
				got, _ = sql(n, "SELECT COUNT(*) FROM rt.acked")
				if got == strconv.Itoa(acked) || time.Now().After(deadline) {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if got != strconv.Itoa(acked) {
				t.Fatalf("%s: %s holds %s of %d acknowledged writes", when, n, got, acked)
			}
			if st, _ := sql(n, "SHOW STATUS LIKE 'wsrep_local_state_comment'"); !strings.HasSuffix(st, "Synced") {
				t.Fatalf("%s: %s is %q", when, n, st)
			}
		}
	}
	kill := func(nodes ...string) {
		t.Helper()
		for _, n := range nodes {
			if _, _, code := runIn(t, dir, "", "lab", "fault", "kill", n, "mariadb"); code != 0 {
				t.Fatalf("kill mariadb on %s failed", n)
			}
		}
		// The supervisor reaps the process; wait until none runs.
		for _, n := range nodes {
			for deadline := time.Now().Add(30 * time.Second); ; {
				if _, _, code := runIn(t, dir, "", "lab", "exec", n, "--", "pgrep", "-x", "mariadbd"); code != 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("mariadbd on %s outlived its kill", n)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	grastate := func(n string) string {
		o, _, _ := runIn(t, dir, "", "lab", "exec", n, "--", "cat", galera.DataDir+"/grastate.dat")
		return o
	}
	setGrastate := func(n, text string) {
		t.Helper()
		if _, _, code := runIn(t, dir, "", "lab", "exec", n, "--", "sh", "-c", "cat > "+galera.DataDir+"/grastate.dat <<'EOF'\n"+text+"EOF\n"); code != 0 {
			t.Fatalf("writing grastate.dat on %s failed", n)
		}
	}
	chosen := regexp.MustCompile(`\[galera\] (ctl\d): chosen to bootstrap the cluster`)

	if _, ok := sql("ctl1", "CREATE DATABASE rt; CREATE TABLE rt.acked (id INT PRIMARY KEY)"); !ok {
		t.Fatal("create table failed")
	}
	write("ctl1", 10)
	verify("new cluster")

	// 1. ctl3 dies first; the others go on taking writes; then ctl3's
	// state is made to look like a clean stop long ago, marked safe to
	// bootstrap (what kolla-ansible trusted). ctl2 and ctl1 die after.
	kill("ctl3")
	write("ctl1", 10)
	g, err := galera.ParseGraState([]byte(grastate("ctl3")))
	if err != nil || g.Fresh() {
		t.Fatalf("ctl3 grastate: %+v %v", g, err)
	}
	setGrastate("ctl3", fmt.Sprintf("# GALERA saved state\nversion: 2.1\nuuid:    %s\nseqno:   3\nsafe_to_bootstrap: 1\n", g.UUID))
	kill("ctl2", "ctl1")
	o, _, code := run("recover", "galera")
	m := chosen.FindStringSubmatch(o)
	if code != 0 || m == nil || m[1] == "ctl3" {
		t.Fatalf("recover after every node died, stale ctl3 marked safe: exit %d, chose %v", code, m)
	}
	verify("after the stale marked node")

	// 2. An interrupted recovery: its decision (ctl2, where the most
	// advanced would be ctl1 by spec order) is on disk. It is resumed.
	kill("ctl1", "ctl2", "ctl3")
	g, _ = galera.ParseGraState([]byte(grastate("ctl1")))
	rec := fmt.Sprintf(`{"cluster":"rec","uuid":%q,"chosen":"ctl2","why":"most advanced (test)","decided":"2026-12-01T10:00:00Z"}`, g.UUID)
	if err := os.WriteFile(filepath.Join(dir, "hastack.galera-recovery.json"), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	o, _, code = run("recover", "galera")
	if code != 0 || !strings.Contains(o, "resuming the recovery decided at 2026-12-01T10:00:00Z: bootstrapping from ctl2") || chosen.MatchString(o) {
		t.Fatalf("resume: exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "hastack.galera-recovery.json")); err == nil {
		t.Error("the recovery record is still here after the cluster runs again")
	}
	for _, n := range ctls {
		if _, _, code := runIn(t, dir, "", "lab", "exec", n, "--", "test", "-e", galera.NodeRecordPath); code == 0 {
			t.Errorf("%s still holds the recovery record", n)
		}
	}
	verify("after the resumed recovery")

	// 3. A wiped node is never chosen, and comes back by a full transfer.
	kill("ctl1", "ctl2", "ctl3")
	if _, _, code := runIn(t, dir, "", "lab", "exec", "ctl1", "--", "sh", "-c", "rm -rf "+galera.DataDir+"/*"); code != 0 {
		t.Fatal("wipe failed")
	}
	o, _, code = run("recover", "galera")
	if m := chosen.FindStringSubmatch(o); code != 0 || m == nil || m[1] == "ctl1" {
		t.Fatalf("recover with ctl1 wiped: exit %d, chose %v", code, m)
	}
	verify("after the wiped node")

	// 4. A foreign history: refused, nothing started.
	kill("ctl1", "ctl2", "ctl3")
	saved := grastate("ctl3")
	setGrastate("ctl3", strings.Replace(saved, g.UUID, "0badc0de-0000-11f1-8000-000000000000", 1))
	if _, e, code := run("recover", "galera"); code != 1 || !strings.Contains(e, "different Galera clusters") {
		t.Errorf("recover with a foreign node: exit %d", code)
	}
	for _, n := range ctls {
		if _, _, code := runIn(t, dir, "", "lab", "exec", n, "--", "pgrep", "-x", "mariadbd"); code == 0 {
			t.Errorf("%s runs mariadbd after a refused recovery", n)
		}
	}
	setGrastate("ctl3", saved)
	if _, _, code := run("recover", "galera"); code != 0 {
		t.Fatalf("recover after restoring ctl3: exit %d", code)
	}
	verify("after the foreign node was restored")

	// 5. One survivor: ctl2 and ctl3 die; ctl1 runs without a Primary
	// component. 'up' refuses; 'recover' confirms the others stopped and
	// promotes ctl1.
	kill("ctl2", "ctl3")
	for deadline := time.Now().Add(60 * time.Second); ; {
		st, _ := sql("ctl1", "SHOW STATUS LIKE 'wsrep_cluster_status'")
		if strings.HasSuffix(st, "non-Primary") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ctl1 alone is still %q", st)
		}
		time.Sleep(500 * time.Millisecond)
	}
	o, _, code = run("recover", "galera")
	if code != 0 || !strings.Contains(o, "[galera] ctl1: promoting to a Primary component") {
		t.Fatalf("recover with one survivor: exit %d", code)
	}
	verify("after the survivor was promoted")

	// 6. Healthy: nothing to do.
	if o, _, code := run("recover", "galera"); code != 0 || !strings.Contains(o, "nothing to do") {
		t.Errorf("recover on a healthy cluster: exit %d", code)
	}
}
