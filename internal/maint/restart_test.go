package maint

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/status"
)

func cluster(t *testing.T) *spec.Cluster {
	t.Helper()
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "m", Controllers: 3, Computes: 1, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	c, ps := spec.Parse(data)
	if err := ps.Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

// report is a healthy layer whose writes go to writer and whose VIP is on
// holder.
func report(writer, holder string) status.Report {
	r := status.Report{Healthy: true, Writer: writer}
	for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
		r.Services.Endpoint = append(r.Services.Endpoint, status.EndpointEntry{Node: n, Healthy: true, HoldsVIP: n == holder})
	}
	return r
}

func stepNames(steps []step) string {
	var out []string
	for _, s := range steps {
		tag := ""
		if s.writer {
			tag += "+w"
		}
		if s.holder {
			tag += "+v"
		}
		out = append(out, s.n.Name+tag)
	}
	return strings.Join(out, " ")
}

func TestOrder(t *testing.T) {
	c := cluster(t)
	for _, tc := range []struct {
		name           string
		writer, holder string
		o              Options
		want           string
	}{
		{"all engines: others first, then the VIP holder, the writer last", "ctl1", "ctl2", Options{}, "ctl3 cmp1 ctl2+v ctl1+w"},
		{"writer and holder on one node: it goes last, once", "ctl2", "ctl2", Options{}, "ctl1 ctl3 cmp1 ctl2+w+v"},
		{"rabbitmq only: nothing moves, spec order, no compute", "ctl1", "ctl2", Options{Engines: []string{"rabbitmq"}}, "ctl1 ctl2 ctl3"},
		{"galera: the writes move, the VIP stays", "ctl1", "ctl1", Options{Engines: []string{"galera"}}, "ctl2 ctl3 ctl1+w"},
		{"chrony reaches computes", "ctl1", "ctl1", Options{Engines: []string{"chrony"}}, "ctl1 ctl2 ctl3 cmp1"},
		{"named nodes, reordered", "ctl1", "ctl3", Options{Nodes: []string{"ctl1", "ctl3", "ctl2"}}, "ctl2 ctl3+v ctl1+w"},
		{"a name twice counts once", "ctl3", "ctl3", Options{Nodes: []string{"ctl2", "ctl2"}, Engines: []string{"memcached", "memcached"}}, "ctl2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := order(c, report(tc.writer, tc.holder), tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if got := stepNames(steps); got != tc.want {
				t.Errorf("order = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOrderRefusals(t *testing.T) {
	c := cluster(t)
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Engines: []string{"postgres"}}, `no engine "postgres"; the engines are chrony, memcached, galera, rabbitmq, endpoint`},
		{Options{Nodes: []string{"ctl9"}}, `no node "ctl9" in the spec; the nodes are ctl1, ctl2, ctl3, cmp1`},
		{Options{Nodes: []string{"cmp1"}, Engines: []string{"galera"}}, "cmp1 (compute) runs none of galera"},
	} {
		_, err := order(c, report("ctl1", "ctl1"), tc.o)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want a usage error with %q", tc.o, err, tc.want)
		}
	}
}

// A layer that is not healthy is refused before anything is done: no
// command runs (no nodes are given, so any would fail), no 'up'.
func TestRestartRefusesUnhealthy(t *testing.T) {
	c := cluster(t)
	ups := 0
	_, err := Restart(context.Background(), c, nil, Options{
		Status: func(context.Context) status.Report {
			return status.Report{Problems: []string{"galera on ctl2: not Synced"}}
		},
		Up: func(context.Context) error { ups++; return nil },
	})
	if err == nil || !strings.Contains(err.Error(), "not healthy") || !strings.Contains(err.Error(), "galera on ctl2: not Synced") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("error: %v", err)
	}
	if ups != 0 {
		t.Errorf("up ran %d times", ups)
	}
}
