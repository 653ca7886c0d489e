package status

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/engine/chrony"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/memcached"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/spec"
)

// healthyReport is three controllers and one compute with everything up.
func healthyReport() (Report, rabbitmq.Status) {
	var r Report
	bus := rabbitmq.Status{Healthy: true, AnsweredBy: "rabbit@ctl1"}
	for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
		r.Services.Galera = append(r.Services.Galera, GaleraEntry{Node: n, Status: galera.Status{Healthy: true}})
		r.Services.Memcached = append(r.Services.Memcached, MemcachedEntry{Node: n, Stats: memcached.Stats{Healthy: true}})
		r.Services.RabbitMQ = append(r.Services.RabbitMQ, RabbitEntry{Node: n, Healthy: true})
		r.Services.Endpoint = append(r.Services.Endpoint, EndpointEntry{Node: n, Healthy: true, HoldsVIP: n == "ctl1"})
		r.Services.NTP = append(r.Services.NTP, NTPEntry{Node: n, Status: chrony.Status{Healthy: true}})
	}
	r.Services.NTP = append(r.Services.NTP, NTPEntry{Node: "cmp1", Status: chrony.Status{Healthy: true}})
	return r, bus
}

func TestJudge(t *testing.T) {
	c := &spec.Cluster{}
	c.Spec.Database.Endpoint.VIP = "10.77.0.10"
	tgt := Target{Cluster: c}
	cases := []struct {
		name    string
		break_  func(r *Report, bus *rabbitmq.Status) error
		verdict string
		problem string
	}{
		{"all up", func(*Report, *rabbitmq.Status) error { return nil }, Healthy, ""},
		{"one galera node down", func(r *Report, _ *rabbitmq.Status) error {
			r.Services.Galera[1].Healthy, r.Services.Galera[1].Problem = false, "refused"
			return nil
		}, Degraded, "galera ctl2: refused"},
		{"every galera node down", func(r *Report, _ *rabbitmq.Status) error {
			for i := range r.Services.Galera {
				r.Services.Galera[i].Healthy = false
			}
			return nil
		}, NotServing, ""},
		{"VIP does not answer", func(*Report, *rabbitmq.Status) error { return errors.New("timeout") }, NotServing, "endpoint: timeout"},
		{"VIP on two nodes", func(r *Report, _ *rabbitmq.Status) error {
			r.Services.Endpoint[2].HoldsVIP = true
			return nil
		}, Degraded, "2 controllers hold the VIP"},
		{"VIP on no node", func(r *Report, _ *rabbitmq.Status) error {
			r.Services.Endpoint[0].HoldsVIP = false
			return nil
		}, Degraded, "no controller holds the VIP"},
		// The holder cannot be asked (its SSH refused), the VIP answers:
		// one problem, the one saying why that node cannot be asked.
		{"VIP holder cannot be asked, its time probe says why", func(r *Report, _ *rabbitmq.Status) error {
			r.Services.Endpoint[0].HoldsVIP, r.Services.Endpoint[0].VIPUnknown = false, "host key changed"
			r.Services.NTP[0].Healthy, r.Services.NTP[0].Problem = false, "chrony probe ctl1: host key changed"
			return nil
		}, Degraded, "ntp ctl1: chrony probe ctl1: host key changed"},
		{"VIP holder cannot be asked, nothing else says why", func(r *Report, _ *rabbitmq.Status) error {
			r.Services.Endpoint[0].HoldsVIP, r.Services.Endpoint[0].VIPUnknown = false, "session refused"
			return nil
		}, Degraded, "endpoint ctl1: cannot tell whether it holds the VIP: session refused"},
		{"VIP holder cannot be asked and the VIP is silent", func(r *Report, _ *rabbitmq.Status) error {
			r.Services.Endpoint[0].HoldsVIP, r.Services.Endpoint[0].VIPUnknown = false, "timeout"
			return errors.New("no answer")
		}, NotServing, "no controller that could be asked holds the VIP 10.77.0.10 (not asked: ctl1)"},
		{"no broker answers", func(r *Report, bus *rabbitmq.Status) error {
			*bus = rabbitmq.Status{Problem: "connection refused\nmore"}
			for i := range r.Services.RabbitMQ {
				r.Services.RabbitMQ[i].Healthy = false
			}
			return nil
		}, NotServing, "rabbitmq: connection refused"},
		{"guest present", func(_ *Report, bus *rabbitmq.Status) error {
			bus.Warnings = []string{"the guest user exists"}
			return nil
		}, Degraded, "guest"},
		{"compute clock unsynchronised", func(r *Report, _ *rabbitmq.Status) error {
			r.Services.NTP[3].Healthy, r.Services.NTP[3].Problem = false, "not synchronised"
			return nil
		}, Degraded, "ntp cmp1"},
		{"every memcached down", func(r *Report, _ *rabbitmq.Status) error {
			for i := range r.Services.Memcached {
				r.Services.Memcached[i].Healthy = false
			}
			return nil
		}, NotServing, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, bus := healthyReport()
			werr := tc.break_(&r, &bus)
			judge(&r, tgt, bus, werr)
			if r.Verdict != tc.verdict {
				t.Errorf("verdict %q, want %q (problems %v)", r.Verdict, tc.verdict, r.Problems)
			}
			if r.Healthy != (tc.verdict == Healthy) {
				t.Errorf("healthy = %v with verdict %q", r.Healthy, r.Verdict)
			}
			if tc.problem != "" && !strings.Contains(strings.Join(r.Problems, "\n"), tc.problem) {
				t.Errorf("problems %v lack %q", r.Problems, tc.problem)
			}
			if strings.Contains(tc.name, "its time probe says why") && len(r.Problems) != 1 {
				t.Errorf("problems %q, want only the time probe's", r.Problems)
			}
			if want := map[string]int{Healthy: 0, Degraded: 1, NotServing: 2}[tc.verdict]; r.ExitCode() != want {
				t.Errorf("exit code %d, want %d", r.ExitCode(), want)
			}
		})
	}
}

// TestSpeaker: a node on the wrong side of a partition (thawed after a
// freeze) reports its peers not running; the view of a node that sees no
// partition speaks for the cluster instead.
func TestSpeaker(t *testing.T) {
	view := func(by string, partitioned bool) rabbitmq.Status {
		st := rabbitmq.Status{AnsweredBy: by}
		for _, n := range []string{"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"} {
			ns := rabbitmq.NodeStatus{Name: n, Running: true}
			if partitioned && n == by {
				ns.Partitions = []string{"rabbit@ctl2", "rabbit@ctl3"}
			} else if partitioned {
				ns.Running = false
			}
			st.Nodes = append(st.Nodes, ns)
		}
		return st
	}
	sts := []rabbitmq.Status{view("rabbit@ctl1", true), view("rabbit@ctl2", false), view("rabbit@ctl3", false)}
	if got := speaker(sts, make([]error, 3)); got.AnsweredBy != "rabbit@ctl2" {
		t.Errorf("speaker: %s, want rabbit@ctl2 (the first that sees no partition)", got.AnsweredBy)
	}
	errs := []error{nil, errors.New("down"), errors.New("down")}
	if got := speaker(sts, errs); got.AnsweredBy != "rabbit@ctl1" {
		t.Errorf("speaker with only the partitioned node answering: %s, want its view", got.AnsweredBy)
	}
	errs = []error{errors.New("down"), nil, nil}
	if got := speaker(sts, errs); got.AnsweredBy != "rabbit@ctl2" {
		t.Errorf("speaker with ctl1 silent: %s", got.AnsweredBy)
	}
}

// A broker the cluster sees running whose client port refuses serves no
// client (maintenance mode after an interrupted 'hastack restart'): it is
// not healthy, and the problem says what to do. Its other problems come
// first.
func TestRabbitEntryClientPort(t *testing.T) {
	n := spec.Node{Name: "ctl2"}
	bus := rabbitmq.Status{AnsweredBy: "rabbit@ctl1", Nodes: []rabbitmq.NodeStatus{{Name: "rabbit@ctl2", Running: true}}}
	if e := rabbitEntry(n, bus, true, 5672, nil); !e.Healthy {
		t.Errorf("port open: %+v", e)
	}
	e := rabbitEntry(n, bus, false, 5672, nil)
	if e.Healthy || !strings.Contains(e.Problem, "client port 5672 does not accept connections") || !strings.Contains(e.Problem, "'hastack up' takes it out") {
		t.Errorf("port refused: %+v", e)
	}
	bus.Nodes[0].Running = false
	if e := rabbitEntry(n, bus, false, 5672, nil); e.Problem != "rabbit@ctl2 is not running" {
		t.Errorf("stopped broker: %q", e.Problem)
	}
	// What the node's service says tells a stopped broker from one whose
	// boot has not finished (or hangs).
	killed := &node.ServiceState{Name: "rabbitmq", Exited: time.Now(), ExitCode: -1, Signal: "killed"}
	if e := rabbitEntry(n, bus, false, 5672, killed); e.Problem != "rabbit@ctl2 is not running: its service is stopped (killed)" {
		t.Errorf("killed broker: %q", e.Problem)
	}
	exited := &node.ServiceState{Name: "rabbitmq", Exited: time.Now(), ExitCode: 1}
	if e := rabbitEntry(n, bus, false, 5672, exited); e.Problem != "rabbit@ctl2 is not running: its service is stopped (exit code 1)" {
		t.Errorf("exited broker: %q", e.Problem)
	}
	booting := &node.ServiceState{Name: "rabbitmq", Running: true, PID: 42, Started: time.Now().Add(-95 * time.Second)}
	e = rabbitEntry(n, bus, false, 5672, booting)
	// 95 s ago when the entry was made, rounded to the second: 1m35s, or
	// 1m36s on a machine slow enough to take half a second in between.
	if e.Healthy || !regexp.MustCompile(`^rabbit@ctl2 is not running in the cluster, though its service runs \(started 1m3[56]s ago\)`).MatchString(e.Problem) || !strings.Contains(e.Problem, "paused after a partition") || !strings.Contains(e.Problem, "restarts one whose boot hangs") {
		t.Errorf("booting broker: %q", e.Problem)
	}
}
