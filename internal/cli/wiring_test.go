package cli

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/openstack"
	"github.com/hastack/hastack/internal/spec"
)

// TestIntegrationWiring deploys the layer on a lab and proves what the
// cloud wires in: the services' databases and users (Debian's oslo.db
// through the VIP with each rendered [database] connection, a writer
// killed under it), a changed password, grants hastack did not give, a
// dropped user; keystonemiddleware's token cache encrypted; and 'hastack
// serve' scraped (expfmt), an engine killed, a node cut off.
func TestIntegrationWiring(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: deploys the layer on a lab, runs oslo.db and keystonemiddleware against it and scrapes hastack serve; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root")
	}
	if out, err := exec.Command(pythonDebian, "-c", "import oslo_db, keystonemiddleware, memcache").CombinedOutput(); err != nil {
		t.Fatalf("oslo.db and keystonemiddleware are not installed (run scripts/install-deps): %v\n%s", err, out)
	}
	scripts, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := testLab(t, "wiring", "sw", 3, 0, "10.183", "10.182")
	hs := labUp(t, dir)
	if _, code := hs("up"); code != 0 {
		t.Fatal("up failed")
	}
	out, code := hs("up")
	if code != 0 || !strings.Contains(out, "[databases] nothing to do") || !strings.Contains(out, "up: nothing changed") {
		t.Fatalf("second up changed something:\n%s", out)
	}
	if _, code := hs("render", "--out", "out"); code != 0 {
		t.Fatal("render failed")
	}
	specPath := filepath.Join(dir, "hastack.yaml")
	c, ps, err := spec.Load(specPath)
	if err != nil || ps.Err() != nil {
		t.Fatal(err, ps.Err())
	}
	conf := func(svc string) string { return filepath.Join(dir, "out", openstack.Dir, svc+".conf") }
	readSecrets := func() map[string]string {
		data, err := os.ReadFile(filepath.Join(dir, "hastack.secrets.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var sf struct{ Secrets map[string]string }
		if err := yaml.Unmarshal(data, &sf); err != nil {
			t.Fatal(err)
		}
		return sf.Secrets
	}
	vip := net.JoinHostPort(c.Spec.Database.Endpoint.VIP, fmt.Sprint(c.Spec.Database.Endpoint.Port))
	sqlAs := func(user, password, db string) error {
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", vip, db
		cfg.Timeout = 3 * time.Second
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			return err
		}
		d := sql.OpenDB(conn)
		defer d.Close()
		return d.Ping()
	}
	ctlSQL := func(stmts string) {
		t.Helper()
		if _, code := hs("lab", "exec", "ctl2", "--", "mariadb", "-e", stmts); code != 0 {
			t.Fatalf("mariadb -e %q on ctl2 failed", stmts)
		}
	}

	t.Run("oslo.db through the VIP", func(t *testing.T) {
		var files []string
		for _, svc := range []string{"nova", "cinder", "neutron", "keystone"} {
			files = append(files, conf(svc))
		}
		cmd := exec.Command(pythonDebian, append([]string{filepath.Join(scripts, "servicedb_check.py")}, files...)...)
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		sc := bufio.NewScanner(stdout)
		seen := map[string]bool{}
		var writer string
		for sc.Scan() {
			var rec struct {
				Section, User, Database, Host, Error string
				OK, Ready, Reconnected               bool
				Failures                             []string
				Seconds                              float64
			}
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("servicedb_check.py: %q: %v", sc.Text(), err)
			}
			switch {
			case rec.Ready:
				// Kill the writer's mariadb under the engine.
				if _, code := hs("lab", "fault", "kill", writer, "mariadb"); code != 0 {
					t.Fatalf("kill mariadb on %s failed", writer)
				}
				io.WriteString(stdin, "go\n")
			case rec.Reconnected:
				if rec.Host == writer {
					t.Errorf("after the kill the query was answered by %s, the killed writer", rec.Host)
				}
				t.Logf("oslo.db reconnected on its own to %s %.2f s after the writer's mariadb was killed (%d failed attempts: %v)", rec.Host, rec.Seconds, len(rec.Failures), rec.Failures)
			case rec.Database != "":
				if !rec.OK {
					t.Errorf("%s [%s] as %s: %s", rec.Database, rec.Section, rec.User, rec.Error)
				}
				seen[rec.Database] = true
				writer = rec.Host
			default:
				if strings.Contains(sc.Text(), `"reconnected": false`) {
					t.Errorf("oslo.db did not reconnect within 60 s: %s", sc.Text())
				}
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("servicedb_check.py: %v\n%s", err, stderr.String())
		}
		for _, d := range openstack.Databases() {
			if !seen[d.Name] {
				t.Errorf("database %s was not exercised", d.Name)
			}
		}
		if _, code := hs("up"); code != 0 {
			t.Fatal("up after the kill failed")
		}
		// Each user reaches its own databases only.
		sec := readSecrets()
		if err := sqlAs("nova", sec["database/nova"], "nova_api"); err != nil {
			t.Errorf("nova cannot reach nova_api: %v", err)
		}
		if err := sqlAs("nova", sec["database/nova"], "keystone"); err == nil || !strings.Contains(err.Error(), "1044") {
			t.Errorf("nova reaches keystone's database: %v", err)
		}
		if err := sqlAs("cinder", sec["database/nova"], "cinder"); err == nil {
			t.Error("cinder logs in with nova's password")
		}
	})

	t.Run("changed password, other grants, dropped user", func(t *testing.T) {
		p := filepath.Join(dir, "hastack.secrets.yaml")
		data, _ := os.ReadFile(p)
		changed := regexp.MustCompile(`(?m)^(\s+database/cinder:).*$`).ReplaceAll(data, []byte("${1} Cinder0therPassw0rd"))
		if err := os.WriteFile(p, changed, 0o600); err != nil {
			t.Fatal(err)
		}
		ctlSQL("CREATE USER cinder@'%' IDENTIFIED BY 'x'; GRANT SELECT ON keystone.* TO cinder@'%'; DROP USER neutron@'" + galera.AdminHost(c) + "'")
		o, e, code := runIn(t, dir, "", "status")
		if code == 0 || !strings.Contains(o, "database user cinder: password differs from the secrets file") || !strings.Contains(o, "database user neutron: user missing") {
			t.Errorf("status does not report the stale password and the dropped user (exit %d):\n%s%s", code, o, e)
		}
		out, code := hs("up")
		if code != 0 {
			t.Fatal("up failed")
		}
		for _, want := range []string{"set cinder@", "create user neutron@", "cinder@'%' exists too (another host): not given by hastack; left in place"} {
			if !strings.Contains(out, want) {
				t.Errorf("up output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "Cinder0therPassw0rd") {
			t.Error("up printed a password")
		}
		if err := sqlAs("cinder", "Cinder0therPassw0rd", "cinder"); err != nil {
			t.Errorf("the changed password was not applied: %v", err)
		}
		if o, _ := hs("lab", "exec", "ctl2", "--", "mariadb", "-N", "-e", "SELECT COUNT(*) FROM mysql.db WHERE User='cinder' AND Host='%' AND Db='keystone'"); strings.TrimSpace(o) != "1" {
			t.Errorf("cinder@'%%''s grant on keystone, which hastack did not give, was touched: %q", o)
		}
		if o, e, code := runIn(t, dir, "", "status"); code != 0 || !strings.Contains(o, "cinder@'%' exists too") {
			t.Errorf("status after up (exit %d) does not list the other grant:\n%s%s", code, o, e)
		}
		ctlSQL("DROP USER cinder@'%'")
		if out, code := hs("up"); code != 0 || !strings.Contains(out, "up: nothing changed") {
			t.Errorf("up after the repair changed something:\n%s", out)
		}
	})

	t.Run("keystonemiddleware token cache is encrypted", func(t *testing.T) {
		type result struct {
			Strategy         string `json:"strategy"`
			Roundtrip        bool   `json:"roundtrip"`
			Entries          int    `json:"entries"`
			PlaintextEntries int    `json:"plaintext_entries"`
		}
		run := func(file string) result {
			var r result
			if err := json.Unmarshal(pythonOutput(t, filepath.Join(scripts, "token_cache_check.py"), file), &r); err != nil {
				t.Fatal(err)
			}
			return r
		}
		got := run(conf("nova"))
		if got.Strategy != "ENCRYPT" || !got.Roundtrip || got.Entries == 0 || got.PlaintextEntries != 0 {
			t.Errorf("rendered nova.conf: %+v; want ENCRYPT, a round trip, entries, none in plain text", got)
		}
		// The same check without the two lines sees the token data: the
		// check can tell.
		data, _ := os.ReadFile(conf("nova"))
		plain := regexp.MustCompile(`(?m)^memcache_(security_strategy|secret_key) = .*$`).ReplaceAll(data, nil)
		p := filepath.Join(dir, "plain.conf")
		if err := os.WriteFile(p, plain, 0o600); err != nil {
			t.Fatal(err)
		}
		if ctl := run(p); ctl.PlaintextEntries == 0 {
			t.Errorf("without ENCRYPT the check found no plain text: %+v (the check cannot tell)", ctl)
		}
	})

	t.Run("serve", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var sout, serr strings.Builder
		go func() {
			done <- Run(ctx, Streams{In: strings.NewReader(""), Out: &sout, Err: &serr}, []string{"serve", "-f", specPath, "--listen", addr, "--probe-timeout", "4s"})
		}()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v\n%s", err, serr.String())
			}
		}()
		get := func(path string) (*http.Response, string, error) {
			cl := http.Client{Timeout: 15 * time.Second}
			resp, err := cl.Get("http://" + addr + path)
			if err != nil {
				return nil, "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return resp, string(b), err
		}
		var body string
		for i := 0; ; i++ {
			var err error
			if _, body, err = get("/metrics"); err == nil {
				break
			}
			if i > 50 {
				t.Fatalf("serve does not answer: %v\n%s", err, serr.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		value := func(body, name string, labels map[string]string) (float64, bool) {
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(strings.NewReader(body))
			if err != nil {
				t.Fatalf("the metrics do not parse: %v", err)
			}
			return familyValue(fams[name], labels)
		}
		for _, n := range c.Controllers() {
			for _, svc := range []string{"galera", "rabbitmq", "memcached", "ntp", "endpoint"} {
				if v, ok := value(body, "hastack_up", map[string]string{"node": n.Name, "service": svc}); !ok || v != 1 {
					t.Errorf("hastack_up{node=%s,service=%s} = %v (present %v), want 1", n.Name, svc, v, ok)
				}
			}
		}
		if v, _ := value(body, "hastack_galera_cluster_size", map[string]string{"node": "ctl1"}); v != 3 {
			t.Errorf("galera cluster size %v", v)
		}
		if _, page, err := get("/"); err != nil || !strings.Contains(page, "<th>GALERA</th>") {
			t.Errorf("page: %v", err)
		}
		checkPageInChromium(t, "http://"+addr+"/")

		// Kill an engine: its metric changes.
		if _, code := hs("lab", "fault", "kill", "ctl2", "memcached"); code != 0 {
			t.Fatal("kill memcached failed")
		}
		waitMetric := func(name string, labels map[string]string, want float64) string {
			t.Helper()
			var last float64
			for i := 0; i < 30; i++ {
				_, b, err := get("/metrics")
				if err == nil {
					v, ok := value(b, name, labels)
					if ok && v == want {
						return b
					}
					last = v
				}
				time.Sleep(500 * time.Millisecond)
			}
			t.Fatalf("%s%v stayed %v, want %v", name, labels, last, want)
			return ""
		}
		waitMetric("hastack_up", map[string]string{"node": "ctl2", "service": "memcached"}, 0)

		// Cut a node off: the scrape still answers, within its deadline,
		// and says the node's engines are down.
		if _, code := hs("lab", "fault", "partition", "ctl3"); code != 0 {
			t.Fatal("partition failed")
		}
		defer hs("lab", "fault", "heal", "ctl3")
		time.Sleep(1100 * time.Millisecond) // past the shared round's 1 s
		t0 := time.Now()
		resp, b, err := get("/metrics")
		took := time.Since(t0)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("a scrape with ctl3 cut off failed: %v", err)
		}
		t.Logf("scrape with ctl3 cut off answered in %s", took.Round(time.Millisecond))
		if v, ok := value(b, "hastack_up", map[string]string{"node": "ctl3", "service": "galera"}); !ok || v != 0 {
			t.Errorf("galera on the cut-off ctl3: %v (present %v), want 0", v, ok)
		}
		if _, code := hs("lab", "fault", "heal", "ctl3"); code != 0 {
			t.Fatal("heal failed")
		}
		if _, code := hs("up"); code != 0 {
			t.Fatal("up after the faults failed")
		}
		waitMetric("hastack_up", map[string]string{"node": "ctl2", "service": "memcached"}, 1)
	})
}

func familyValue(f *dto.MetricFamily, want map[string]string) (float64, bool) {
	if f == nil {
		return 0, false
	}
	for _, m := range f.Metric {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if match && m.Gauge != nil {
			return m.Gauge.GetValue(), true
		}
	}
	return 0, false
}

// checkPageInChromium loads the page in headless Chromium (Debian's
// chromium) and fails on any console message of level error, or when the
// tables did not render. Skipped with a message when Chromium is absent.
func checkPageInChromium(t *testing.T, url string) {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Log("chromium is not installed: the page was checked as HTML only")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir="+profile,
		"--enable-logging=stderr", "--v=0", "--dump-dom", url)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	dom := stdout.String()
	if !strings.Contains(dom, "<th>GALERA</th>") || !strings.Contains(dom, "<th>MEMCACHED</th>") || !strings.Contains(dom, "<td>ctl1</td>") {
		t.Errorf("chromium did not render the tables:\n%s", dom)
	}
	// The page runs no script: any console message (an error, a refused
	// resource, a CSP violation) is a fault.
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") {
			t.Errorf("console message in chromium: %s", line)
		}
	}
}
