package galera

import (
	"errors"
	"strings"
	"testing"
)

const (
	uuidA = "6ab5c4e6-e840-11f1-afdf-4b126413a34a"
	uuidB = "0badc0de-0000-11f1-8000-000000000000"
)

// Views of three controllers, built per case.
func stopped(name, uuid string, seqno int64, safe bool) View {
	return View{Name: name, Reachable: true, HasGra: true, Gra: GraState{UUID: uuid, Seqno: seqno, SafeToBootstrap: safe}}
}

func runningPrimary(name string) View {
	return View{Name: name, Reachable: true, Running: true, Answers: true, Primary: true, StateUUID: uuidA, Status: "Primary/Synced", HasGra: true, Gra: GraState{UUID: uuidA, Seqno: -1}}
}

func fresh(name string) View {
	return View{Name: name, Reachable: true, HasGra: true, Gra: GraState{UUID: zeroUUID, Seqno: -1}}
}

func wiped(name string) View { return View{Name: name, Reachable: true} }

func TestDecide(t *testing.T) {
	cases := []struct {
		name  string
		views []View
		// want: mode, bootstrap node, recovered nodes, joined nodes,
		// restarted nodes; or a refusal containing refuse.
		mode    Mode
		boot    string
		recover string
		join    string
		restart string
		refuse  string
	}{
		{name: "fresh: the first controller bootstraps, the others join",
			views: []View{fresh("ctl1"), wiped("ctl2"), fresh("ctl3")},
			mode:  ModeNew, boot: "ctl1", join: "ctl2,ctl3"},
		{name: "clean full stop: the node marked safe bootstraps",
			views: []View{stopped("ctl1", uuidA, 40, false), stopped("ctl2", uuidA, 41, false), stopped("ctl3", uuidA, 42, true)},
			mode:  ModeSafe, boot: "ctl3", join: "ctl1,ctl2"},
		{name: "a safe node beside crashed ones: their positions are recovered first (they may be ahead)",
			views: []View{stopped("ctl1", uuidA, -1, false), stopped("ctl2", uuidA, 42, true), stopped("ctl3", uuidA, -1, false)},
			mode:  ModeRecover, recover: "ctl1,ctl2,ctl3", join: "ctl1,ctl2,ctl3"},
		{name: "power cut: every position recovered, most advanced chosen at run time",
			views: []View{stopped("ctl1", uuidA, -1, false), stopped("ctl2", uuidA, -1, false), stopped("ctl3", uuidA, -1, false)},
			mode:  ModeRecover, recover: "ctl1,ctl2,ctl3", join: "ctl1,ctl2,ctl3"},
		{name: "one stale node that stopped cleanly long ago: not trusted, positions recovered",
			views: []View{stopped("ctl1", uuidA, 10, false), stopped("ctl2", uuidA, -1, false), stopped("ctl3", uuidA, -1, false)},
			mode:  ModeRecover, recover: "ctl1,ctl2,ctl3", join: "ctl1,ctl2,ctl3"},
		{name: "a safe_to_bootstrap marker on a node behind another: not trusted",
			views: []View{stopped("ctl1", uuidA, 10, true), stopped("ctl2", uuidA, 20, false), stopped("ctl3", uuidA, -1, false)},
			mode:  ModeRecover, recover: "ctl1,ctl2,ctl3", join: "ctl1,ctl2,ctl3"},
		{name: "a wiped node is never a candidate, and joins",
			views: []View{wiped("ctl1"), stopped("ctl2", uuidA, -1, false), stopped("ctl3", uuidA, -1, false)},
			mode:  ModeRecover, recover: "ctl2,ctl3", join: "ctl1,ctl2,ctl3"},
		{name: "a fresh node marked safe (00000000:-1) is never a candidate",
			views: []View{{Name: "ctl1", Reachable: true, HasGra: true, Gra: GraState{UUID: zeroUUID, Seqno: -1, SafeToBootstrap: true}}, stopped("ctl2", uuidA, 7, true), stopped("ctl3", uuidA, 5, false)},
			mode:  ModeSafe, boot: "ctl2", join: "ctl1,ctl3"},
		{name: "a foreign cluster's data on one node: refused",
			views:  []View{stopped("ctl1", uuidA, 5, false), stopped("ctl2", uuidA, 6, true), stopped("ctl3", uuidB, 9, false)},
			refuse: "different Galera clusters"},
		{name: "a foreign node beside a running cluster: refused",
			views:  []View{runningPrimary("ctl1"), runningPrimary("ctl2"), stopped("ctl3", uuidB, 9, true)},
			refuse: "ctl3 holds data of another Galera cluster"},
		{name: "an unreachable node: refused, nothing bootstrapped",
			views:  []View{stopped("ctl1", uuidA, -1, false), {Name: "ctl2"}, stopped("ctl3", uuidA, -1, false)},
			refuse: "ctl2 cannot be reached"},
		{name: "running cluster: stopped nodes join, changed ones restart",
			views: []View{runningPrimary("ctl1"), stopped("ctl2", uuidA, -1, false), func() View { v := runningPrimary("ctl3"); v.Stale = true; return v }()},
			mode:  ModeRunning, join: "ctl2", restart: "ctl3"},
		{name: "running but not answering: refused",
			views:  []View{runningPrimary("ctl1"), {Name: "ctl2", Reachable: true, Running: true, StatusErr: "timeout"}, runningPrimary("ctl3")},
			refuse: "ctl2: mariadb runs but does not answer"},
		{name: "running without a Primary component: refused, with the manual step",
			views:  []View{{Name: "ctl1", Reachable: true, Running: true, Answers: true, Status: "non-Primary/Initialized"}, stopped("ctl2", uuidA, -1, false), stopped("ctl3", uuidA, -1, false)},
			refuse: "none is in a Primary component"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Decide(c.views, Options{})
			if c.refuse != "" {
				var r *Refusal
				if !errors.As(err, &r) || !strings.Contains(err.Error(), c.refuse) || r.Remedy == "" {
					t.Fatalf("want a refusal with %q and a remedy, got %+v, %v", c.refuse, d, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []string{d.Boot, strings.Join(d.Recover, ","), strings.Join(d.Join, ","), strings.Join(d.Restart, ",")}
			want := []string{c.boot, c.recover, c.join, c.restart}
			if d.Mode != c.mode || strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("got mode %d boot/recover/join/restart %q, want mode %d %q", d.Mode, got, c.mode, want)
			}
			if d.Describe(c.views) == "" {
				t.Error("no description")
			}
		})
	}
}

func TestDecideRecoverOptions(t *testing.T) {
	survivor := View{Name: "ctl1", Reachable: true, Running: true, Answers: true, Status: "non-Primary/Initialized"}
	// One survivor, the others stopped and reachable: promoted on recover.
	d, err := Decide([]View{survivor, stopped("ctl2", uuidA, -1, false), stopped("ctl3", uuidA, -1, false)}, Options{Recover: true})
	if err != nil || d.Mode != ModePromote || strings.Join(d.Promote, ",") != "ctl1" || strings.Join(d.Join, ",") != "ctl2,ctl3" {
		t.Errorf("one survivor, others stopped: %+v %v", d, err)
	}
	// The others unreachable: a slow node must not cause a split brain,
	// so nothing without the operator's confirmation.
	views := []View{survivor, {Name: "ctl2"}, {Name: "ctl3"}}
	if _, err := Decide(views, Options{Recover: true}); err == nil || !strings.Contains(err.Error(), "ctl2, ctl3 cannot be reached") {
		t.Errorf("survivor with the others unreachable, no --yes: %v", err)
	}
	d, err = Decide(views, Options{Recover: true, Yes: true})
	if err != nil || d.Mode != ModePromote || strings.Join(d.Unknown, ",") != "ctl2,ctl3" || len(d.Join) != 0 {
		t.Errorf("survivor, others confirmed gone: %+v %v", d, err)
	}
	// 'up' never promotes.
	if _, err := Decide([]View{survivor, stopped("ctl2", uuidA, -1, false), stopped("ctl3", uuidA, -1, false)}, Options{}); err == nil || !strings.Contains(err.Error(), "hastack recover galera") {
		t.Errorf("up with a survivor: %v", err)
	}
	// A named node that is not a controller, or holds no data.
	if _, err := Decide([]View{fresh("ctl1"), stopped("ctl2", uuidA, -1, false)}, Options{Recover: true, BootstrapNode: "cmp1"}); err == nil {
		t.Error("named node outside the spec accepted")
	}
	if _, err := Decide([]View{wiped("ctl1"), stopped("ctl2", uuidA, -1, false)}, Options{Recover: true, BootstrapNode: "ctl1"}); err == nil || !strings.Contains(err.Error(), "no Galera data") {
		t.Errorf("named wiped node: %v", err)
	}
	// Named node overrides a safe marker elsewhere: positions recovered.
	d, err = Decide([]View{stopped("ctl1", uuidA, 3, false), stopped("ctl2", uuidA, 5, true)}, Options{Recover: true, BootstrapNode: "ctl1"})
	if err != nil || d.Mode != ModeRecover {
		t.Errorf("named node beside a safe one: %+v %v", d, err)
	}
}

func TestChoose(t *testing.T) {
	p := func(n string, seq int64) Position {
		return Position{Node: n, UUID: uuidA, Seqno: seq, Source: "wsrep-recover"}
	}
	unknown := Position{Node: "ctl3", Source: "unknown", Err: "unreachable"}
	foreign := Position{Node: "ctl3", UUID: uuidB, Seqno: 99, Source: "grastate"}
	cases := []struct {
		name   string
		pos    []Position
		named  string
		yes    bool
		want   string
		refuse string
		why    string
	}{
		{name: "most advanced", pos: []Position{p("ctl1", 5), p("ctl2", 9), p("ctl3", 7)}, want: "ctl2", why: "most advanced: seqno 9"},
		{name: "tie: first in spec order", pos: []Position{p("ctl1", 9), p("ctl2", 9)}, want: "ctl1"},
		{name: "a foreign position is never chosen", pos: []Position{p("ctl1", 5), foreign}, want: "ctl1"},
		{name: "unknown position refused", pos: []Position{p("ctl1", 5), p("ctl2", 6), unknown}, refuse: "cannot be established"},
		{name: "named and unknown needs yes", pos: []Position{p("ctl1", 5), unknown}, named: "ctl1", refuse: "unknown: ctl3"},
		{name: "named and unknown with yes", pos: []Position{p("ctl1", 5), unknown}, named: "ctl1", yes: true, want: "ctl1", why: "beyond seqno 5 is lost"},
		{name: "named behind says what is lost", pos: []Position{p("ctl1", 5), p("ctl2", 8)}, named: "ctl1", refuse: "ctl2 is 3 transaction(s) ahead"},
		{name: "named behind with yes", pos: []Position{p("ctl1", 5), p("ctl2", 8)}, named: "ctl1", yes: true, want: "ctl1"},
		{name: "named most advanced needs nothing", pos: []Position{p("ctl1", 8), p("ctl2", 5)}, named: "ctl1", want: "ctl1"},
		{name: "named unknown refused", pos: []Position{p("ctl1", 8), unknown}, named: "ctl3", yes: true, refuse: "no known position"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, why, err := Choose(c.pos, uuidA, c.named, c.yes)
			if c.refuse != "" {
				if err == nil || !strings.Contains(err.Error(), c.refuse) {
					t.Fatalf("got %s (%s), %v; want a refusal with %q", got, why, err, c.refuse)
				}
				return
			}
			if err != nil || got != c.want || !strings.Contains(why, c.why) {
				t.Errorf("got %s (%s), %v; want %s (%s)", got, why, err, c.want, c.why)
			}
		})
	}
}
