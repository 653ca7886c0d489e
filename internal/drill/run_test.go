package drill

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeFaults records what the drill did to the nodes.
type fakeFaults struct {
	mu  sync.Mutex
	did []string
}

func (f *fakeFaults) log(s string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.did = append(f.did, s)
	return s, nil
}
func (f *fakeFaults) KillService(_ context.Context, n, s string) (string, error) {
	return f.log("kill " + n + " " + s)
}
func (f *fakeFaults) KillNode(_ context.Context, n string) (string, error) {
	return f.log("killnode " + n)
}
func (f *fakeFaults) Freeze(_ context.Context, n string) (string, error) { return f.log("freeze " + n) }
func (f *fakeFaults) Thaw(_ context.Context, n string) (string, error)   { return f.log("thaw " + n) }
func (f *fakeFaults) Cut(_ context.Context, n string) (string, error)    { return f.log("cut " + n) }
func (f *fakeFaults) Heal(_ context.Context, n string) (string, error)   { return f.log("heal " + n) }
func (f *fakeFaults) StopService(_ context.Context, n, s string) (string, error) {
	return f.log("stop " + n + " " + s)
}

func fakeEnv(f *fakeFaults, healthy func() bool, ups *int) *Env {
	return &Env{
		Faults: f, Controllers: []string{"ctl1", "ctl2", "ctl3"}, Computes: []string{"cmp1"},
		Status: func(context.Context) (bool, []string) {
			if healthy() {
				return true, nil
			}
			return false, []string{"ntp cmp1: not synchronised"}
		},
		Up: func(context.Context) (bool, []string, error) {
			*ups++
			return true, []string{"[chrony] cmp1: start chronyd"}, nil
		},
		Baseline: 10 * time.Millisecond, Hold: 50 * time.Millisecond, Settle: 50 * time.Millisecond,
		RecoveryBound: 200 * time.Millisecond, After: time.Millisecond,
	}
}

// Ctrl-C during the hold: the fault is still undone, and the record says
// the run was interrupted.
func TestRunHealsWhenInterrupted(t *testing.T) {
	f := &fakeFaults{}
	ups := 0
	e := fakeEnv(f, func() bool { return true }, &ups)
	e.Hold = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	sc, _ := Find("freeze-node")
	rec := Run(ctx, e, sc, "ctl1")
	if got := strings.Join(f.did, ","); got != "freeze ctl1,thaw ctl1" {
		t.Errorf("did %q, want the freeze and its thaw", got)
	}
	if !strings.Contains(rec.Error, "interrupted") {
		t.Errorf("record error %q, want it to say interrupted", rec.Error)
	}
	if ups != 1 {
		t.Errorf("up ran %d times after an interrupt, want 1 (it puts things back)", ups)
	}
}

// A killed engine is healed by 'up'; the marks are in order.
func TestRunKillHealsWithUp(t *testing.T) {
	f := &fakeFaults{}
	ups := 0
	e := fakeEnv(f, func() bool { return true }, &ups)
	sc, _ := Find("clock-stop")
	rec := Run(context.Background(), e, sc, "cmp1")
	if got := strings.Join(f.did, ","); got != "kill cmp1 chrony" {
		t.Errorf("did %q", got)
	}
	if ups != 1 || !rec.UpActed || len(rec.UpDid) != 1 {
		t.Errorf("up ran %d times, acted %v did %v; want once, acted", ups, rec.UpActed, rec.UpDid)
	}
	m := rec.Marks
	if !(m.Warm <= m.Fault && m.Fault < m.Heal && m.Heal <= m.Healthy && m.Healthy <= m.End) || !rec.Recovered || rec.Error != "" {
		t.Errorf("marks %+v recovered %v error %q", m, rec.Recovered, rec.Error)
	}
}

// A layer that does not come back is reported, bounded, with the problems.
func TestRunNotRecovered(t *testing.T) {
	f := &fakeFaults{}
	ups := 0
	down := false
	e := fakeEnv(f, func() bool { return !down }, &ups)
	sc := Scenario{Name: "x", Undo: nothing, Inject: func(context.Context, Faulter, *Env, string) ([]string, error) {
		down = true
		return []string{"broke it"}, nil
	}}
	rec := Run(context.Background(), e, sc, "ctl1")
	if rec.Recovered || !strings.Contains(rec.Error, "not healthy") || ups != 1 {
		t.Errorf("recovered %v error %q ups %d; want not recovered, named, up tried once", rec.Recovered, rec.Error, ups)
	}
	if r := Build(rec, DefaultTargets()); r.Verdict != VerdictError || len(r.Misses) == 0 {
		t.Errorf("verdict %s misses %v", r.Verdict, r.Misses)
	}
}
