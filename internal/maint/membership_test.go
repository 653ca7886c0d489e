package maint

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/status"
)

func TestCheckRemove(t *testing.T) {
	c := cluster(t)
	ctl3, _ := c.Node("ctl3")
	all := []string{"ctl1", "ctl2", "ctl3"}
	for _, tc := range []struct {
		name             string
		galera, rabbitmq []string
		want             string // "" allowed
	}{
		{"all healthy", all, all, ""},
		{"the node itself down (gone for good)", []string{"ctl1", "ctl2"}, []string{"ctl1", "ctl2"}, ""},
		{"another database down", []string{"ctl1", "ctl3"}, all, "ctl2's database is not Synced"},
		{"another broker down", all, []string{"ctl2", "ctl3"}, "ctl1's broker does not run"},
	} {
		err := CheckRemove(c, layer(tc.galera, tc.rabbitmq), ctl3)
		var r *plan.Refusal
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (!errors.As(err, &r) || !strings.Contains(r.Problem, tc.want) || !strings.Contains(r.Problem, "nothing was changed")):
			t.Errorf("%s: %v, want a refusal saying %q", tc.name, err, tc.want)
		}
	}
	// Two controllers: removing either would leave one.
	two := *c
	two.Spec.Nodes = nil
	for _, n := range c.Spec.Nodes {
		if n.Name != "ctl3" {
			two.Spec.Nodes = append(two.Spec.Nodes, n)
		}
	}
	ctl2, _ := two.Node("ctl2")
	if err := CheckRemove(&two, layer(all, all), ctl2); err == nil || !strings.Contains(err.Error(), "keeps at least 2") {
		t.Errorf("removal down to 1 controller: %v, want a refusal", err)
	}
}

// TestAddRefusesUnhealthy: a node is never added to a layer that is not
// healthy, and nothing is written.
func TestAddRefusesUnhealthy(t *testing.T) {
	c := cluster(t)
	wrote := false
	o := MembershipOptions{
		Status: func(context.Context) status.Report { return status.Report{Problems: []string{"ctl2: mariadb is down"}} },
		Write:  func() error { wrote = true; return nil },
	}
	_, err := Add(context.Background(), c, c, nil, "ctl3", o)
	var r *plan.Refusal
	if !errors.As(err, &r) || !strings.Contains(r.Problem, "ctl2: mariadb is down") || wrote {
		t.Errorf("add to an unhealthy layer: %v (spec written: %v), want a refusal naming the problem", err, wrote)
	}
	if _, err := Add(context.Background(), c, c, nil, "ctl9", o); err == nil || !strings.Contains(err.Error(), `no node "ctl9"`) {
		t.Errorf("add of a node the new spec lacks: %v", err)
	}
}
