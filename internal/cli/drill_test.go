package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/spec"
)

// Refusals that need no cluster: each is exit 2, and nothing runs.
func TestDrillRefusalsShort(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(lab.EnvStateDir, filepath.Join(dir, "state"))
	t.Setenv(lab.EnvPrefix, "dq")
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "drq", Controllers: 3, Computes: 1, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hastack.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"drill", "run", "no-such"}, "freeze-node"}, // the refusal lists the scenarios
		{[]string{"drill", "run"}, "kill-db"},
		{[]string{"drill", "run", "kill-db", "--hold", "0s"}, "--hold"},
		{[]string{"drill", "run", "kill-db", "--hold", "11m"}, "--hold"},
		{[]string{"drill", "run", "kill-db", "--node", "ctl9"}, "no such node"},
		{[]string{"drill", "run", "kill-db", "--all"}, "not both"},
	} {
		o, e, code := runIn(t, dir, "", c.args...)
		if code != 2 || !strings.Contains(o+e, c.want) {
			t.Errorf("hastack %s: exit %d, want 2 naming %q:\n%s%s", strings.Join(c.args, " "), code, c.want, o, e)
		}
	}
	// Not a lab: refused without --yes, saying what it would break.
	withSSH, err := spec.SetClusterSSH(data, spec.SSH{User: "root", IdentityFile: "id_ed25519", KnownHosts: "known_hosts"})
	if err != nil {
		t.Fatal(err)
	}
	real := t.TempDir()
	if err := os.WriteFile(filepath.Join(real, "hastack.yaml"), withSSH, 0o644); err != nil {
		t.Fatal(err)
	}
	o, e, code := runIn(t, real, "", "drill", "run", "kill-db", "freeze-node")
	if code != 2 || !strings.Contains(e, "not a lab") || !strings.Contains(e, "stopped for the hold") || !strings.Contains(e, "mariadb on the target is killed") {
		t.Errorf("drill on real hosts without --yes: exit %d, want 2 saying what it breaks:\n%s%s", code, o, e)
	}
	// cut-node over SSH would cut hastack's own session: refused even
	// with --yes; --all leaves it out and says so.
	o, e, code = runIn(t, real, "", "drill", "run", "kill-db", "cut-node", "--yes")
	if code != 2 || !strings.Contains(e, "refused: cut-node") || !strings.Contains(e, "SSH session") {
		t.Errorf("cut-node on real hosts: exit %d, want 2 saying why:\n%s%s", code, o, e)
	}
	o, e, code = runIn(t, real, "", "drill", "run", "--all")
	if code != 2 || !strings.Contains(e, "cut-node: left out of --all") || strings.Contains(e, "cut off the management network") || !strings.Contains(e, "power-loss") {
		t.Errorf("--all on real hosts without --yes: exit %d, want 2 without cut-node:\n%s%s", code, o, e)
	}
	o, _, code = runIn(t, dir, "", "drill", "list")
	if code != 0 || !strings.Contains(o, "cut-node") || !strings.Contains(o, "power-loss") {
		t.Errorf("drill list: exit %d\n%s", code, o)
	}
}

// drillLab makes the drill tests' lab: prefix dt, addresses in 10.172.
func drillLab(t *testing.T) (string, func(args ...string) (string, int)) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(lab.EnvStateDir, filepath.Join(dir, "state"))
	useLabPrefix(t, "dt")
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "drilltest", Controllers: 3, Computes: 1, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	y := strings.NewReplacer("10.78.0.", "10.172.4.", "10.78.1.", "10.172.5.", "10.77.", "10.172.").Replace(string(data))
	if strings.Contains(y, "10.77.") || strings.Contains(y, "10.78.") {
		t.Fatal("drill test spec still has default addresses")
	}
	if err := os.WriteFile(filepath.Join(dir, "hastack.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	hs := labUp(t, dir)
	if _, code := hs("up"); code != 0 {
		t.Fatal("up failed")
	}
	return dir, hs
}

type drillJSON struct {
	Scenarios []struct {
		Name          string   `json:"name"`
		Node          string   `json:"node"`
		HealthyAfterS float64  `json:"healthyAfterS"`
		Recovered     bool     `json:"recovered"`
		UpActed       bool     `json:"upActed"`
		UpDid         []string `json:"upDid"`
		Verdict       string   `json:"verdict"`
		Misses        []string
		Losses        []string
		Error         string
		Workloads     []struct {
			Name       string   `json:"name"`
			Skipped    string   `json:"skipped"`
			WindowS    *float64 `json:"windowS"`
			P99Ms      *float64 `json:"p99Ms"`
			MaxMs      *float64 `json:"maxMs"`
			Errors     *int     `json:"errors"`
			Acked      *int     `json:"acked"`
			Lost       *int     `json:"lost"`
			Unknown    *int     `json:"unknown"`
			Committed  *int     `json:"unknownCommitted"`
			Confirmed  *int     `json:"confirmed"`
			Duplicates *int     `json:"duplicates"`
			Verified   bool     `json:"verified"`
			Keys       *int     `json:"keys"`
			KeysMissed *int     `json:"keysMissed"`
			Served     *float64 `json:"servedAgainS"`
		} `json:"workloads"`
	} `json:"scenarios"`
}

func runDrillJSON(t *testing.T, dir string, args ...string) drillJSON {
	t.Helper()
	out, e, code := runIn(t, dir, "", args...)
	t.Logf("hastack %s: exit %d\n%s", strings.Join(args, " "), code, e)
	if code == 3 {
		t.Errorf("data lost (exit 3): a finding about the layer:\n%s", out)
	} else if code != 0 && code != 1 {
		t.Fatalf("exit %d, want 0, 1 (a target missed) or 3 (data lost)", code)
	}
	var rep drillJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("drill JSON: %v\n%s", err, out)
	}
	return rep
}

// checkDrill checks each scenario's record: it ran, its workloads were
// verified, nothing acknowledged was lost, and (mustRecover) the layer was
// healthy again after the heal.
func checkDrill(t *testing.T, rep drillJSON, mustRecover bool) {
	t.Helper()
	for _, s := range rep.Scenarios {
		if strings.HasPrefix(s.Error, "not run") {
			t.Logf("%s: %s", s.Name, s.Error)
			continue
		}
		if !s.Recovered {
			if mustRecover {
				t.Errorf("%s: status not healthy again after the heal: %s", s.Name, s.Error)
			} else {
				t.Logf("finding: %s: status not healthy again after the heal: %s", s.Name, s.Error)
			}
		} else if s.Error != "" {
			t.Errorf("%s: %s", s.Name, s.Error)
		}
		t.Logf("%s on %s: %s, healthy %.1f s after the heal, up acted %v, misses %v", s.Name, s.Node, s.Verdict, s.HealthyAfterS, s.UpActed, s.Misses)
		if s.Node == "" {
			t.Errorf("%s: no target node", s.Name)
		}
		if s.Name == "clock-stop" && s.Node != "cmp1" {
			t.Errorf("clock-stop broke %s, want the compute node", s.Node)
		}
		if s.Name == "kill-db" && !s.UpActed {
			t.Errorf("kill-db: up did not have to act, yet mariadb was killed")
		}
		for _, w := range s.Workloads {
			if w.Skipped != "" {
				t.Logf("%s/%s skipped: %s", s.Name, w.Name, w.Skipped)
				continue
			}
			if w.WindowS == nil || w.P99Ms == nil || w.MaxMs == nil || w.Errors == nil {
				t.Errorf("%s/%s: a required field is missing", s.Name, w.Name)
			}
			if (w.Name == "db" || w.Name == "mq") && !w.Verified {
				t.Errorf("%s/%s: verification did not complete", s.Name, w.Name)
			}
			switch w.Name {
			case "db":
				if w.Acked == nil || *w.Acked == 0 || w.Lost == nil || w.Unknown == nil || w.Committed == nil {
					t.Errorf("%s/db: no acknowledged writes, or the loss fields are missing", s.Name)
				} else if *w.Lost != 0 {
					t.Errorf("%s/db: %d acknowledged writes lost: %v", s.Name, *w.Lost, s.Losses)
				}
			case "cache":
				if w.Keys == nil || *w.Keys == 0 || w.KeysMissed == nil || w.Served == nil {
					t.Errorf("%s/cache: the keys, keys missed or served-again figures are missing", s.Name)
				}
			case "mq":
				if w.Confirmed == nil || *w.Confirmed == 0 || w.Lost == nil || w.Duplicates == nil {
					t.Errorf("%s/mq: no confirmed messages, or the loss fields are missing", s.Name)
				} else if *w.Lost != 0 {
					t.Errorf("%s/mq: %d confirmed messages lost: %v", s.Name, *w.Lost, s.Losses)
				}
			}
		}
	}
}

// TestIntegrationDrill runs every scenario for real on a lab, with short
// holds, and checks behaviour: each scenario ran its workloads through the
// fault, no acknowledged write or confirmed message was lost, the layer
// came back healthy, the refusals (another drill running, an unhealthy
// layer) break nothing, and the HTML report has one chart per scenario.
// Figures are reported, never asserted.
func TestIntegrationDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: deploys the layer on a lab and breaks it with every drill scenario; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root")
	}
	dir, hs := drillLab(t)

	// Another drill running: the lock on the first controller.
	if _, code := hs("lab", "exec", "ctl1", "--", "mkdir", "-p", "/run/hastack/drill.lock"); code != 0 {
		t.Fatal("making the lock by hand failed")
	}
	o, e, code := runIn(t, dir, "", "drill", "run", "kill-db", "--hold", "5s")
	if code != 2 || !strings.Contains(o+e, "another drill is running") {
		t.Errorf("drill with the lock held: exit %d, want 2 and 'another drill is running':\n%s%s", code, o, e)
	}
	hs("lab", "exec", "ctl1", "--", "rm", "-rf", "/run/hastack/drill.lock")

	// An 'up' running elsewhere holds the cluster lock: refused, naming it,
	// and no drill lock is left behind.
	holder := `{"command":"up","user":"ops","host":"elsewhere","bootId":"x","pid":4242,"since":"2026-01-02T03:04:05Z","token":"elsewhere-4242"}`
	if _, code := hs("lab", "exec", "ctl2", "--", "sh", "-c", "mkdir -p /var/lib/hastack && echo '"+holder+"' > /var/lib/hastack/cluster.lock"); code != 0 {
		t.Fatal("making the cluster lock by hand failed")
	}
	o, e, code = runIn(t, dir, "", "drill", "run", "kill-db", "--hold", "5s")
	if code != 2 || !strings.Contains(o+e, "'hastack up' (pid 4242 on elsewhere") {
		t.Errorf("drill while an up holds the cluster lock: exit %d, want 2 naming it:\n%s%s", code, o, e)
	}
	if _, code := hs("lab", "exec", "ctl1", "--", "test", "!", "-e", "/run/hastack/drill.lock"); code != 0 {
		t.Errorf("the refused drill left its drill lock")
	}
	hs("lab", "exec", "ctl2", "--", "rm", "-f", "/var/lib/hastack/cluster.lock")

	// hastack restart: a name that does not exist is a usage error and
	// changes nothing; one broker's restart drains it first and ends
	// healthy. (The drill's rolling-restart below restarts every node
	// with the write and message accounting.)
	o, e, code = runIn(t, dir, "", "restart", "--engine", "postgres")
	if code != 2 || !strings.Contains(o+e, `no engine "postgres"`) {
		t.Errorf("restart --engine postgres: exit %d, want 2 naming the engines:\n%s%s", code, o, e)
	}
	o, code = hs("restart", "--node", "ctl3", "--engine", "rabbitmq,memcached")
	if code != 0 || !strings.Contains(o, "ctl3: RabbitMQ in maintenance mode") || !strings.Contains(o, "ctl3: RabbitMQ out of maintenance mode") || !strings.Contains(o, "status healthy") {
		t.Errorf("restart of ctl3's broker and cache: exit %d:\n%s", code, o)
	}
	t.Logf("restart of ctl3's broker and cache:\n%s", o)

	// Every scenario that kills something: the layer must come back.
	report := filepath.Join(dir, "report")
	killers := []string{"kill-db", "kill-mq", "kill-cache", "kill-node", "clock-stop", "rolling-restart", "power-loss"}
	rep := runDrillJSON(t, dir, append(append([]string{"drill", "run"}, killers...), "--hold", "5s", "-o", "json", "--report", report)...)
	if len(rep.Scenarios) != len(killers) {
		t.Errorf("%d scenarios reported, want %d", len(rep.Scenarios), len(killers))
	}
	checkDrill(t, rep, true)
	if _, code := hs("status"); code != 0 {
		t.Errorf("status after the drills: exit %d, want healthy", code)
	}
	page, err := os.ReadFile(filepath.Join(report, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(page), "<svg"); n != len(rep.Scenarios) {
		t.Errorf("report has %d charts, want %d", n, len(rep.Scenarios))
	}
	checkInChromium(t, filepath.Join(report, "index.html"), len(rep.Scenarios))

	// The faults without a TCP reset. The layer must come back from both,
	// by itself or through the drill's 'up', which then says what it did:
	// a frozen node may leave RabbitMQ partitioned after the thaw
	// (pause_minority never sees a minority), and RabbitMQ 3.10 may lose a
	// broker's statistics after a cut (docs/limits.md). A cut that needed
	// 'up' is logged as a finding: the target is no command at all.
	quiet := []string{"cut-node", "freeze-node"}
	rep = runDrillJSON(t, dir, append(append([]string{"drill", "run"}, quiet...), "--hold", "5s", "-o", "json")...)
	if len(rep.Scenarios) != len(quiet) {
		t.Errorf("%d scenarios reported, want %d", len(rep.Scenarios), len(quiet))
	}
	checkDrill(t, rep, true)
	for _, s := range rep.Scenarios {
		if s.Name == "cut-node" && s.Recovered && s.UpActed {
			t.Logf("finding: cut-node: healthy again only after 'hastack up' acted: %v", s.UpDid)
		}
		if s.UpActed && len(s.UpDid) == 0 {
			t.Errorf("%s: 'hastack up' acted without saying what it did", s.Name)
		}
	}
	// Every fault was undone: no stopped process, no bridge port of the
	// lab left disabled (a cut).
	for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
		o, _ := hs("lab", "exec", n, "--", "sh", "-c", "ps -eo stat= | grep -c '^T'; true")
		if strings.TrimSpace(o) != "0" {
			t.Errorf("%s: a fault was not undone (stopped processes): %q", n, o)
		}
	}
	if out, err := exec.Command("bridge", "-j", "link", "show").Output(); err != nil {
		t.Error(err)
	} else {
		var ports []struct{ Ifname, State string }
		if err := json.Unmarshal(out, &ports); err != nil {
			t.Error(err)
		}
		for _, p := range ports {
			if strings.HasPrefix(p.Ifname, "dt") && p.State != "forwarding" {
				t.Errorf("a cut was not healed: bridge port %s is %s", p.Ifname, p.State)
			}
		}
	}
	// The lock was released.
	if _, code := hs("lab", "exec", "ctl1", "--", "test", "!", "-e", "/run/hastack/drill.lock"); code != 0 {
		t.Errorf("the drill lock is still held after the drill")
	}
	if _, code := hs("status"); code != 0 {
		t.Errorf("status after %v: exit %d, want healthy", quiet, code)
	}

	// An unhealthy layer: refused, nothing broken.
	if _, code := hs("lab", "fault", "kill", "ctl2", "memcached"); code != 0 {
		t.Fatal("kill memcached failed")
	}
	o, e, code = runIn(t, dir, "", "drill", "run", "kill-db", "--hold", "5s")
	if code != 2 || !strings.Contains(o+e, "not healthy") {
		t.Errorf("drill on an unhealthy layer: exit %d, want 2:\n%s%s", code, o, e)
	}
}

// checkInChromium loads the page in headless Chromium (Debian's chromium
// package): it must load, have one chart per scenario, and log no console
// error. Without chromium the check is skipped with a note.
func checkInChromium(t *testing.T, page string, charts int) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Logf("chromium not installed (Debian package chromium, scripts/install-deps): the report was not opened in a browser")
		return
	}
	// --dump-dom prints the DOM after load; console errors go to stderr
	// with --enable-logging=stderr --v=0 as "CONSOLE(...)" lines.
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0", "--dump-dom", "file://"+page)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	dom, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	if n := strings.Count(string(dom), "<svg"); n != charts {
		t.Errorf("chromium: %d charts in the loaded page, want %d", n, charts)
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "CONSOLE") || strings.Contains(l, "Uncaught") {
			t.Errorf("chromium console: %s", l)
		}
	}
}
