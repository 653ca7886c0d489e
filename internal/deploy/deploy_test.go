package deploy

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/plan"
)

// recorder notes the order in which steps ran.
type recorder struct {
	mu  sync.Mutex
	ran []string
}

func (r *recorder) step(host string, wave int, err error) plan.Step {
	return plan.Step{Host: host, Action: "act on " + host, Wave: wave, Do: func(context.Context) error {
		r.mu.Lock()
		r.ran = append(r.ran, host)
		r.mu.Unlock()
		return err
	}}
}

func TestRunOrderAndReport(t *testing.T) {
	var r recorder
	var planned []string
	phase := func(name string, steps ...plan.Step) plan.Phase {
		return plan.Phase{Name: name, Plan: func(context.Context, *plan.Target) ([]plan.Step, error) {
			planned = append(planned, name)
			return steps, nil
		}}
	}
	var out bytes.Buffer
	rep, err := Run(context.Background(), &plan.Target{}, []plan.Phase{
		phase("one", r.step("b", 1, nil), r.step("a", 0, nil), r.step("c", 2, nil)),
		phase("empty"),
		phase("two", r.step("d", 0, nil)),
	}, Options{Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.ran, ","); got != "a,b,c,d" {
		t.Errorf("steps ran %s, want waves in order then the next phase: a,b,c,d", got)
	}
	if got := strings.Join(planned, ","); got != "one,empty,two" {
		t.Errorf("phases planned %s", got)
	}
	if rep.Steps != 4 || len(rep.Phases) != 3 || rep.Phases[0].Steps != 3 || rep.Phases[1].Steps != 0 {
		t.Errorf("report %+v", rep)
	}
	for _, want := range []string{"[one] a: act on a", "[one] a: ok", "[empty] nothing to do", "[two] done: 1 step(s)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if s := rep.Summary(false); !strings.HasPrefix(s, "up: done: 4 step(s)") {
		t.Errorf("summary %q", s)
	}
}

// The steps of one wave run at the same time: each waits until all have
// started (bounded, so that a serial runner fails instead of hanging).
func TestRunWaveInParallel(t *testing.T) {
	const n = 3
	var started atomic.Int32
	all := make(chan struct{})
	var steps []plan.Step
	for i := range n {
		steps = append(steps, plan.Step{Host: string(rune('a' + i)), Action: "meet", Do: func(ctx context.Context) error {
			if started.Add(1) == n {
				close(all)
			}
			select {
			case <-all:
				return nil
			case <-time.After(10 * time.Second):
				return errors.New("the other steps of the wave never started")
			}
		}})
	}
	ph := plan.Phase{Name: "p", Plan: func(context.Context, *plan.Target) ([]plan.Step, error) { return steps, nil }}
	if _, err := Run(context.Background(), &plan.Target{}, []plan.Phase{ph}, Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestRunStopsAtFailure(t *testing.T) {
	var r recorder
	boom := errors.New("boom")
	var laterPlanned bool
	phases := []plan.Phase{
		{Name: "one", Plan: func(context.Context, *plan.Target) ([]plan.Step, error) {
			return []plan.Step{r.step("a", 0, nil), r.step("b", 0, boom), r.step("c", 1, nil)}, nil
		}},
		{Name: "two", Plan: func(context.Context, *plan.Target) ([]plan.Step, error) {
			laterPlanned = true
			return nil, nil
		}},
	}
	_, err := Run(context.Background(), &plan.Target{}, phases, Options{})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v does not wrap the step's", err)
	}
	for _, want := range []string{"phase one, host b", "act on b", "run 'hastack up' again"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	for _, h := range r.ran {
		if h == "c" {
			t.Error("a later wave ran after a failed one")
		}
	}
	if laterPlanned {
		t.Error("a later phase was planned after a failure")
	}
	// A plan that fails names its phase.
	_, err = Run(context.Background(), &plan.Target{}, []plan.Phase{{Name: "x", Plan: func(context.Context, *plan.Target) ([]plan.Step, error) {
		return nil, boom
	}}}, Options{})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "phase x: boom") {
		t.Errorf("planning error: %v", err)
	}
}

func TestRunDryRunActsNowhere(t *testing.T) {
	var r recorder
	var out bytes.Buffer
	tg := &plan.Target{}
	var sawDry bool
	ph := plan.Phase{Name: "p", Plan: func(_ context.Context, t *plan.Target) ([]plan.Step, error) {
		sawDry = t.DryRun
		return []plan.Step{r.step("a", 0, nil), r.step("b", 1, nil)}, nil
	}}
	rep, err := Run(context.Background(), tg, []plan.Phase{ph}, Options{DryRun: true, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ran) != 0 || !sawDry {
		t.Errorf("dry run ran %v (planner saw DryRun=%v)", r.ran, sawDry)
	}
	if !strings.Contains(out.String(), "[p] a: would act on a") || rep.Steps != 2 || !strings.Contains(rep.Summary(true), "nothing was changed") {
		t.Errorf("dry run output:\n%s\nsummary %q", out.String(), rep.Summary(true))
	}
}

// A step that never returns by itself is ended at the step deadline and
// the run fails naming it.
func TestRunStepDeadline(t *testing.T) {
	ph := plan.Phase{Name: "p", Plan: func(context.Context, *plan.Target) ([]plan.Step, error) {
		return []plan.Step{{Host: "h", Action: "hang", Do: func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}}}, nil
	}}
	_, err := Run(context.Background(), &plan.Target{}, []plan.Phase{ph}, Options{StepTimeout: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "host h: hang: no result after 50ms") {
		t.Fatalf("err = %v", err)
	}
}

// Verify runs after a phase's steps in a real run, and never in a dry run;
// a failed verification fails the run.
func TestRunVerify(t *testing.T) {
	var order []string
	ph := func(steps int, verr error) plan.Phase {
		return plan.Phase{Name: "v",
			Plan: func(context.Context, *plan.Target) ([]plan.Step, error) {
				order = append(order, "plan")
				var out []plan.Step
				for range steps {
					out = append(out, plan.Step{Host: "h", Action: "a", Do: func(context.Context) error { order = append(order, "step"); return nil }})
				}
				return out, nil
			},
			Verify: func(context.Context, *plan.Target) error { order = append(order, "verify"); return verr },
		}
	}
	for _, c := range []struct {
		steps int
		dry   bool
		verr  error
		want  string
	}{
		{1, false, nil, "plan,step,verify"},
		{0, false, nil, "plan,verify"},
		{1, true, nil, "plan"},
		{0, false, errors.New("not healthy"), "plan,verify"},
	} {
		order = nil
		_, err := Run(context.Background(), &plan.Target{}, []plan.Phase{ph(c.steps, c.verr)}, Options{DryRun: c.dry})
		if got := strings.Join(order, ","); got != c.want {
			t.Errorf("%+v: ran %s, want %s", c, got, c.want)
		}
		if (err != nil) != (c.verr != nil) || (err != nil && !strings.Contains(err.Error(), "phase v: not healthy")) {
			t.Errorf("%+v: err %v", c, err)
		}
	}
}
