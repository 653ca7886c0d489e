package galera

import (
	"testing"

	"github.com/hastack/hastack/internal/spec"
)

func TestDonorPreference(t *testing.T) {
	c := &spec.Cluster{}
	for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
		c.Spec.Nodes = append(c.Spec.Nodes, spec.Node{Name: n, Role: spec.RoleController})
	}
	c.Spec.Nodes = append(c.Spec.Nodes, spec.Node{Name: "cmp1", Role: spec.RoleCompute})
	if got := donorPreference(c, "ctl2"); got != "ctl3,ctl1," {
		t.Errorf("donorPreference(ctl2) = %q", got)
	}
	if got := donorPreference(c, "ctl1"); got != "ctl3,ctl2," {
		t.Errorf("donorPreference(ctl1) = %q", got)
	}
}

func TestParseGraStateAndRecoveredPosition(t *testing.T) {
	g, err := ParseGraState([]byte("# GALERA saved state\nversion: 2.1\nuuid:    6ab5c4e6-e840-11f1-afdf-4b126413a34a\nseqno:   -1\nsafe_to_bootstrap: 0\n"))
	if err != nil || g.UUID != "6ab5c4e6-e840-11f1-afdf-4b126413a34a" || g.Seqno != -1 || g.SafeToBootstrap || g.Fresh() {
		t.Errorf("crashed node: %+v", g)
	}
	g, err = ParseGraState([]byte("uuid:    00000000-0000-0000-0000-000000000000\nseqno:   -1\nsafe_to_bootstrap: 1\n"))
	if err != nil || !g.Fresh() || !g.SafeToBootstrap {
		t.Errorf("fresh node: %+v", g)
	}
	// A malformed seqno is an error, not 0 (which would read as a clean
	// stop and skip the crash recovery).
	for _, bad := range []string{"seqno: \n", "seqno: 12x\n", "seqno: -\n"} {
		if g, err := ParseGraState([]byte("uuid: 6ab5c4e6-e840-11f1-afdf-4b126413a34a\n" + bad)); err == nil {
			t.Errorf("grastate with %q parsed as %+v, want an error", bad, g)
		}
	}
	log := "2026-11-24 19:53:45 0 [Note] InnoDB: Starting\n2026-11-24 19:53:46 0 [Note] WSREP: Recovered position: a0ae8256-e840-11f1-8371-4635bd8c8a77:6\n"
	if got := ParseRecoveredPosition(log); got != "a0ae8256-e840-11f1-8371-4635bd8c8a77:6" {
		t.Errorf("ParseRecoveredPosition = %q", got)
	}
	if got := ParseRecoveredPosition("nothing here"); got != "" {
		t.Errorf("ParseRecoveredPosition of a log without it = %q", got)
	}
}
