package serve

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/hastack/hastack/internal/engine/chrony"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/memcached"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/status"
)

// report is a status report of a 3-controller cluster with ctl2's
// memcached down and ctl3's RabbitMQ partitioned.
func report() status.Report {
	var r status.Report
	r.Verdict = status.Degraded
	r.Writer = "ctl1"
	for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
		r.Services.Galera = append(r.Services.Galera, status.GaleraEntry{Node: n, Status: galera.Status{Healthy: true, ClusterSize: 3, ClusterStatus: "Primary", LocalState: "Synced", FlowControlPaused: 0.25, LocalRecvQueue: 2}})
		mc := memcached.Stats{Healthy: n != "ctl2", CurrItems: 7, Evictions: 1, CurrConnections: 3}
		r.Services.Memcached = append(r.Services.Memcached, status.MemcachedEntry{Node: n, Stats: mc})
		re := status.RabbitEntry{Node: n, Healthy: n != "ctl3", NodeStatus: rabbitmq.NodeStatus{Name: "rabbit@" + n, Running: true}}
		if n == "ctl3" {
			re.Partitions = []string{"rabbit@ctl1", "rabbit@ctl2"}
			re.MemoryAlarm = true
		}
		r.Services.RabbitMQ = append(r.Services.RabbitMQ, re)
		r.Services.NTP = append(r.Services.NTP, status.NTPEntry{Node: n, Status: chrony.Status{Healthy: true, Synchronised: true, Stratum: 2, SystemOffset: 3 * time.Millisecond}})
		r.Services.Endpoint = append(r.Services.Endpoint, status.EndpointEntry{Node: n, Healthy: true, HoldsVIP: n == "ctl1"})
	}
	r.Bus.AnsweredBy = "rabbit@ctl1"
	r.Bus.Queues.Total = 4
	r.Bus.Queues.ByType = map[string]int{"quorum": 4}
	r.ServiceDatabases = []galera.ServiceDBState{{User: "nova", Exists: true, PasswordOK: true}, {User: "cinder"}}
	return r
}

func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	return parse(t, rec.Body)
}

func parse(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("the exposition does not parse: %v", err)
	}
	return fams
}

// Value returns the value of the sample of family name whose labels
// include want; ok false when there is none.
func Value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
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
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

func TestMetricsFromReport(t *testing.T) {
	s := New(Options{Cluster: "c1", Collect: func(context.Context) status.Report { return report() }})
	fams := scrape(t, s)
	for name, f := range fams {
		if !strings.HasPrefix(name, "hastack_") {
			t.Errorf("metric %s does not start with hastack_", name)
		}
		for _, m := range f.Metric {
			labels := map[string]bool{}
			for _, l := range m.Label {
				labels[l.GetName()] = true
			}
			if !labels["cluster"] {
				t.Errorf("%s has no cluster label", name)
			}
			if name != MetricHealthy && name != MetricServing && name != MetricProbeSeconds && name != MetricProbeAge && name != MetricProbeRounds && (!labels["node"] || !labels["service"]) {
				t.Errorf("%s has no node or service label: %v", name, m.Label)
			}
		}
	}
	cases := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{MetricUp, map[string]string{"node": "ctl2", "service": "memcached"}, 0},
		{MetricUp, map[string]string{"node": "ctl1", "service": "memcached"}, 1},
		{MetricUp, map[string]string{"node": "ctl3", "service": "rabbitmq"}, 0},
		{MetricGaleraClusterSize, map[string]string{"node": "ctl1"}, 3},
		{MetricGaleraState, map[string]string{"node": "ctl2", "state": "Synced"}, 1},
		{MetricGaleraFlowControl, map[string]string{"node": "ctl3"}, 0.25},
		{MetricGaleraRecvQueue, map[string]string{"node": "ctl3"}, 2},
		{MetricRabbitPartitions, map[string]string{"node": "ctl3"}, 2},
		{MetricRabbitAlarm, map[string]string{"node": "ctl3", "alarm": "memory"}, 1},
		{MetricRabbitAlarm, map[string]string{"node": "ctl3", "alarm": "disk"}, 0},
		{MetricRabbitQueues, map[string]string{"node": "ctl1", "type": "all"}, 4},
		{MetricMemcachedItems, map[string]string{"node": "ctl1"}, 7},
		{MetricMemcachedEvictions, map[string]string{"node": "ctl1"}, 1},
		{MetricMemcachedConns, map[string]string{"node": "ctl3"}, 3},
		{MetricClockOffset, map[string]string{"node": "ctl2"}, 0.003},
		{MetricClockStratum, map[string]string{"node": "ctl2"}, 2},
		{MetricVIPHolder, map[string]string{"node": "ctl1"}, 1},
		{MetricVIPHolder, map[string]string{"node": "ctl2"}, 0},
		{MetricWriter, map[string]string{"node": "ctl1"}, 1},
		{MetricWriter, map[string]string{"node": "ctl3"}, 0},
		{MetricServiceDatabase, map[string]string{"service": "nova"}, 1},
		{MetricServiceDatabase, map[string]string{"service": "cinder"}, 0},
		{MetricHealthy, nil, 0},
		{MetricServing, nil, 1},
	}
	for _, c := range cases {
		got, ok := Value(fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// A memcached that is down has no item counts (unknown, not zero).
	if _, ok := Value(fams, MetricMemcachedItems, map[string]string{"node": "ctl2"}); ok {
		t.Error("items reported for a memcached that did not answer")
	}
}

// Concurrent scrapes share one probe round; a later scrape within MaxAge
// reuses it; one after MaxAge starts a new round.
func TestScrapesShareOneRound(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	collect := func(ctx context.Context) status.Report {
		calls.Add(1)
		<-release
		return report()
	}
	s := New(Options{Cluster: "c1", Collect: collect, MaxAge: time.Hour})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, httptest.NewRequest("GET", []string{"/metrics", "/status", "/"}[i%3], nil))
			if rec.Code != 200 {
				t.Errorf("%d: %s", rec.Code, rec.Body)
			}
		}()
	}
	// Every request is waiting on the one round.
	for s.Prober().Rounds() != 1 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("20 concurrent requests ran %d probe rounds, want 1", n)
	}
	scrape(t, s)
	if n := calls.Load(); n != 1 {
		t.Fatalf("a scrape within MaxAge probed again (%d rounds)", n)
	}

	// With a virtual clock: past MaxAge, a new round.
	now := time.Unix(1000, 0)
	p := NewProber(func(context.Context) status.Report { calls.Add(1); return report() }, time.Second, time.Second)
	p.now = func() time.Time { return now }
	before := calls.Load()
	p.Get(context.Background())
	p.Get(context.Background())
	now = now.Add(999 * time.Millisecond)
	p.Get(context.Background())
	if got := calls.Load() - before; got != 1 {
		t.Fatalf("within 1 s: %d rounds, want 1", got)
	}
	now = now.Add(2 * time.Millisecond)
	p.Get(context.Background())
	if got := calls.Load() - before; got != 2 {
		t.Fatalf("after 1 s: %d rounds, want 2", got)
	}
}

// A round that hangs is cut at its deadline, and the scrape is answered:
// the probes see their context end and report the nodes as down.
func TestRoundHasADeadline(t *testing.T) {
	collect := func(ctx context.Context) status.Report {
		<-ctx.Done() // a node that never answers
		r := report()
		r.Services.Memcached[0].Healthy = false
		return r
	}
	s := New(Options{Cluster: "c1", Collect: collect, Timeout: 50 * time.Millisecond})
	fams := scrape(t, s)
	if v, _ := Value(fams, MetricUp, map[string]string{"node": "ctl1", "service": "memcached"}); v != 0 {
		t.Errorf("an unanswered probe reads %v, want 0", v)
	}
	// A scraper that gives up early gets an error, not a hang, and the
	// round goes on for the others.
	slow := New(Options{Cluster: "c1", Collect: func(ctx context.Context) status.Report { time.Sleep(200 * time.Millisecond); return report() }, Timeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := slow.Prober().Get(ctx); err == nil {
		t.Error("a caller whose context ended got no error")
	}
	if _, err := slow.Prober().Get(context.Background()); err != nil {
		t.Errorf("the round in flight failed for the next caller: %v", err)
	}
	if n := slow.Prober().Rounds(); n != 1 {
		t.Errorf("%d rounds, want 1 (the second caller waits for the first round)", n)
	}
}

func TestStatusAndPage(t *testing.T) {
	s := New(Options{Cluster: "c1", Collect: func(context.Context) status.Report { return report() }})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"verdict": "degraded"`) {
		t.Errorf("/status: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	body := rec.Body.String()
	for _, want := range []string{`http-equiv="refresh"`, "<th>GALERA</th>", "<th>MEMCACHED</th>", "<td>ctl2</td>", `class="bad">NO</td>`, "<th>SERVICE-DB</th>"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "http://", "https://"} {
		if strings.Contains(body, bad) {
			t.Errorf("page has %q: it must not load anything from elsewhere", bad)
		}
	}
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/nothing", nil))
	if rec.Code != 404 {
		t.Errorf("/nothing: %d", rec.Code)
	}
}

func TestListenInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Listen(l.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "in use by another process") || !strings.Contains(err.Error(), "--listen") {
		t.Fatalf("a taken port: %v", err)
	}
}

func exampleCluster(t *testing.T) *spec.Cluster {
	t.Helper()
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "alerts", Controllers: 3, Computes: 1})
	if err != nil {
		t.Fatal(err)
	}
	c, ps := spec.Parse(data)
	if ps.Err() != nil {
		t.Fatal(ps.Err())
	}
	return c
}

// The rules file is YAML of Prometheus' shape, refers only to metrics the
// server exports, carries the spec's numbers, and Debian's promtool
// accepts it when it is installed.
func TestAlertRules(t *testing.T) {
	c := exampleCluster(t)
	f := Rules(c)
	var doc struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert       string
				Expr        string
				For         string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(f.Content, &doc); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, f.Content)
	}
	if len(doc.Groups) != 1 || len(doc.Groups[0].Rules) < 10 {
		t.Fatalf("unexpected shape: %+v", doc)
	}
	s := New(Options{Cluster: "alerts", Collect: func(context.Context) status.Report { return report() }})
	fams := scrape(t, s)
	alerts := map[string]string{}
	for _, r := range doc.Groups[0].Rules {
		alerts[r.Alert] = r.Expr
		for _, word := range strings.FieldsFunc(r.Expr, func(r rune) bool { return !(r == '_' || r >= 'a' && r <= 'z') }) {
			if strings.HasPrefix(word, "hastack_") && fams[word] == nil {
				t.Errorf("%s refers to %s, which the server does not export", r.Alert, word)
			}
		}
		if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
			t.Errorf("%s lacks severity or summary", r.Alert)
		}
		if !strings.Contains(r.Expr, `cluster="alerts"`) {
			t.Errorf("%s is not limited to the cluster: %s", r.Alert, r.Expr)
		}
	}
	for name, want := range map[string]string{
		"HastackGaleraClusterSmall": "< 3",
		"HastackClockOffset":        "> 0.05",
		"HastackNoVIPHolder":        "== 0",
		"HastackTwoVIPHolders":      "> 1",
		"HastackRabbitMQPartition":  "> 0",
		"HastackRabbitMQAlarm":      "== 1",
		"HastackMemcachedDown":      `service="memcached"`,
		"HastackNodeNotServing":     "count by",
		"HastackGaleraNotSynced":    "== 0",
	} {
		if !strings.Contains(alerts[name], want) {
			t.Errorf("%s = %q, want it to contain %q", name, alerts[name], want)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus, 96 MB, not in scripts/install-deps): the rules were checked as YAML only")
	}
	p := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(p, f.Content, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", p).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// The rules fire on the series they are for (promtool test rules): two VIP
// holders, a Galera node seeing 2 of 3 nodes for more than a minute, a
// RabbitMQ partition, and nothing on a healthy cluster.
func TestAlertRulesFire(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian package prometheus, 96 MB, not in scripts/install-deps): the rules were not evaluated")
	}
	c := exampleCluster(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), Rules(c).Content, 0o644); err != nil {
		t.Fatal(err)
	}
	const tests = `rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - {series: 'hastack_cluster_healthy{cluster="alerts"}', values: '0x5'}
      - {series: 'hastack_vip_holder{cluster="alerts",node="ctl1",service="endpoint"}', values: '1x5'}
      - {series: 'hastack_vip_holder{cluster="alerts",node="ctl2",service="endpoint"}', values: '1x5'}
      - {series: 'hastack_galera_cluster_size{cluster="alerts",node="ctl1",service="galera"}', values: '2x5'}
      - {series: 'hastack_rabbitmq_partitions{cluster="alerts",node="ctl3",service="rabbitmq"}', values: '0 1x4'}
    alert_rule_test:
      - eval_time: 3m
        alertname: HastackTwoVIPHolders
        exp_alerts:
          - exp_labels: {cluster: alerts, severity: critical}
            exp_annotations: {summary: "2 controllers hold the database VIP 10.77.0.10 (split keepalived)"}
      - eval_time: 3m
        alertname: HastackGaleraClusterSmall
        exp_alerts:
          - exp_labels: {cluster: alerts, node: ctl1, service: galera, severity: warning}
            exp_annotations: {summary: "Galera on ctl1 sees 2 nodes; the spec has 3"}
      - eval_time: 0m
        alertname: HastackRabbitMQPartition
        exp_alerts: []
      - eval_time: 2m
        alertname: HastackRabbitMQPartition
        exp_alerts:
          - exp_labels: {cluster: alerts, node: ctl3, service: rabbitmq, severity: critical}
            exp_annotations: {summary: "RabbitMQ on ctl3 is partitioned from 1 node(s)"}
      - eval_time: 3m
        alertname: HastackScrapeMissing
        exp_alerts: []
`
	if err := os.WriteFile(filepath.Join(dir, "test.yml"), []byte(tests), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "test", "rules", "test.yml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
