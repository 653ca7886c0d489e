package maint

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/status"
)

// layer is a status report in which the named controllers' databases are
// Synced in the Primary component and their brokers run.
func layer(galeraOK, rabbitOK []string) status.Report {
	var r status.Report
	for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
		g := status.GaleraEntry{Node: n}
		for _, ok := range galeraOK {
			if ok == n {
				g.Status = galera.Status{Healthy: true}
			}
		}
		r.Services.Galera = append(r.Services.Galera, g)
		e := status.RabbitEntry{Node: n}
		for _, ok := range rabbitOK {
			if ok == n {
				e.Healthy, e.Running = true, true
			}
		}
		r.Services.RabbitMQ = append(r.Services.RabbitMQ, e)
	}
	return r
}

func TestCheckReplace(t *testing.T) {
	c := cluster(t)
	ctl2, _ := c.Node("ctl2")
	for _, tc := range []struct {
		name   string
		rep    status.Report
		holds  []string
		yes    bool
		refuse string // a substring of the refusal; "" when it may go on
	}{
		{"ctl2 dead, the others hold the cluster", layer([]string{"ctl1", "ctl3"}, []string{"ctl1", "ctl3"}), nil, false, ""},
		{"the others lack a Galera majority", layer([]string{"ctl1"}, []string{"ctl1", "ctl3"}), nil, false,
			"Galera is Synced in the Primary component on 1 of the other 2 controllers"},
		{"the others lack a RabbitMQ majority", layer([]string{"ctl1", "ctl3"}, []string{"ctl3"}), nil, false,
			"RabbitMQ runs in the cluster on 1 of the other 2 controllers"},
		{"ctl2 the only Synced node: never wiped, even with --yes", layer([]string{"ctl2"}, []string{"ctl1", "ctl2", "ctl3"}), []string{"a Synced member of the Galera cluster"}, true,
			"Galera is Synced in the Primary component on 0 of the other 2"},
		{"ctl2 still holds data: --yes needed", layer([]string{"ctl1", "ctl3"}, []string{"ctl1", "ctl3"}), []string{"Galera data (/var/lib/mysql)"}, false,
			"ctl2 still holds Galera data (/var/lib/mysql); nothing was changed"},
		{"ctl2 still holds data, --yes given", layer([]string{"ctl1", "ctl3"}, []string{"ctl1", "ctl3"}), []string{"Galera data (/var/lib/mysql)"}, true, ""},
		{"ctl2 a healthy member, --yes given", layer([]string{"ctl1", "ctl2", "ctl3"}, []string{"ctl1", "ctl2", "ctl3"}), []string{"a Synced member of the Galera cluster"}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkReplace(c, tc.rep, ctl2, tc.holds, tc.yes)
			var r *plan.Refusal
			switch {
			case tc.refuse == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.refuse != "" && (!errors.As(err, &r) || !strings.Contains(err.Error(), tc.refuse)):
				t.Errorf("got %v, want a refusal with %q", err, tc.refuse)
			}
		})
	}
}

func TestReplaceUsage(t *testing.T) {
	c := cluster(t)
	for _, tc := range []struct{ node, want string }{
		{"ctl9", `no node "ctl9" in the spec; the nodes are ctl1, ctl2, ctl3, cmp1`},
		{"cmp1", "cmp1 is a compute node: it holds no cluster state"},
	} {
		_, err := Replace(context.Background(), c, nil, tc.node, ReplaceOptions{})
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("replace %s: %v, want a usage error with %q", tc.node, err, tc.want)
		}
	}
}

func TestDonorLine(t *testing.T) {
	log := `2026-12-03 12:30:39 0 [Note] WSREP: Member 1.0 (ctl2) requested state transfer from 'ctl3,ctl1,'. Selected 0.0 (ctl1)(SYNCED) as donor.
2026-12-03 12:30:52 0 [Note] WSREP: Member 2.0 (ctl3) requested state transfer from 'ctl2,ctl1,'. Selected 1.0 (ctl2)(SYNCED) as donor.
2026-12-03 12:31:41 0 [Note] WSREP: Member 2.0 (ctl2) requested state transfer from 'ctl3,ctl1,'. Selected 1.0 (ctl3)(SYNCED) as donor.`
	var got []string
	for _, m := range donorLine.FindAllStringSubmatch(log, -1) {
		if m[1] == "ctl2" {
			got = append(got, m[2])
		}
	}
	if strings.Join(got, " ") != "ctl1 ctl3" {
		t.Errorf("donors of ctl2: %v, want ctl1 then ctl3", got)
	}
}
