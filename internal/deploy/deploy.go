// Package deploy orders the phases of 'hastack up' and runs them: connect ->
// facts -> packages -> secrets -> chrony -> memcached -> galera -> rabbitmq
// -> endpoint -> verify. Each phase plans from facts and acts only where the
// facts call for it; a failure names the phase, the host and the command,
// and a re-run continues from what is already in place.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/hastack/hastack/internal/plan"
)

// Options shape a run.
type Options struct {
	// DryRun prints each phase's per-host plan and changes nothing. Later
	// phases plan from today's facts, so their plan may shrink once the
	// earlier phases have run.
	DryRun bool
	Out    io.Writer
	// Heartbeat is how often a long step says it is still working.
	Heartbeat time.Duration
	// StepTimeout bounds every step (default 1 h: a state transfer of a
	// large database is the longest); a step past it fails with its
	// host and action named, and the run stops there.
	StepTimeout time.Duration
}

// PhaseReport is what one phase did.
type PhaseReport struct {
	Name     string        `json:"name"`
	Steps    int           `json:"steps"`
	Duration time.Duration `json:"duration"`
}

// Report is what a run did.
type Report struct {
	Phases   []PhaseReport `json:"phases"`
	Steps    int           `json:"steps"`
	Duration time.Duration `json:"duration"`
}

// Run plans and runs the phases in order.
func Run(ctx context.Context, t *plan.Target, phases []plan.Phase, o Options) (Report, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = 5 * time.Second
	}
	if o.StepTimeout == 0 {
		o.StepTimeout = time.Hour
	}
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(o.Out, format+"\n", a...)
	}
	t.DryRun = o.DryRun
	t.Progress = func(phase, host, format string, a ...any) {
		say("[%s] %s: %s", phase, host, fmt.Sprintf(format, a...))
	}
	var rep Report
	start := time.Now()
	for _, ph := range phases {
		pstart := time.Now()
		steps, err := ph.Plan(ctx, t)
		if err != nil {
			return rep, fmt.Errorf("phase %s: %w%s", ph.Name, err, resumeHint(o.DryRun))
		}
		if len(steps) == 0 {
			if ph.Verify != nil && !o.DryRun {
				if err := verify(ctx, t, ph, say); err != nil {
					return rep, err
				}
			} else {
				say("[%s] nothing to do (%s)", ph.Name, since(pstart))
			}
			rep.Phases = append(rep.Phases, PhaseReport{Name: ph.Name, Duration: time.Since(pstart)})
			continue
		}
		if o.DryRun {
			for _, w := range plan.Waves(steps) {
				for _, s := range w {
					say("[%s] %s: would %s", ph.Name, s.Host, s.Action)
				}
			}
			rep.Phases = append(rep.Phases, PhaseReport{Name: ph.Name, Steps: len(steps)})
			rep.Steps += len(steps)
			continue
		}
		for _, wave := range plan.Waves(steps) {
			if err := runWave(ctx, ph.Name, wave, say, o.Heartbeat, o.StepTimeout); err != nil {
				return rep, fmt.Errorf("%w%s", err, resumeHint(false))
			}
		}
		if ph.Verify != nil {
			if err := verify(ctx, t, ph, say); err != nil {
				return rep, err
			}
		}
		d := time.Since(pstart)
		say("[%s] done: %d step(s) in %s", ph.Name, len(steps), since(pstart))
		rep.Phases = append(rep.Phases, PhaseReport{Name: ph.Name, Steps: len(steps), Duration: d})
		rep.Steps += len(steps)
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// verify runs a phase's Verify and says how long it took.
func verify(ctx context.Context, t *plan.Target, ph plan.Phase, say func(string, ...any)) error {
	start := time.Now()
	if err := ph.Verify(ctx, t); err != nil {
		return fmt.Errorf("phase %s: %w%s", ph.Name, err, resumeHint(false))
	}
	say("[%s] verified (%s)", ph.Name, since(start))
	return nil
}

func resumeHint(dry bool) string {
	if dry {
		return ""
	}
	return "\nnothing after this was changed; fix the cause and run 'hastack up' again: it continues from what is in place"
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

// runWave runs one wave's steps in parallel, each saying when it starts and
// ends, and reminding the operator every heartbeat that it still works.
func runWave(ctx context.Context, phase string, wave []plan.Step, say func(string, ...any), heartbeat, timeout time.Duration) error {
	errs := make([]error, len(wave))
	var wg sync.WaitGroup
	for i, s := range wave {
		wg.Add(1)
		go func() {
			defer wg.Done()
			say("[%s] %s: %s", phase, s.Host, s.Action)
			done := make(chan struct{})
			t0 := time.Now()
			go func() {
				tick := time.NewTicker(heartbeat)
				defer tick.Stop()
				for {
					select {
					case <-done:
						return
					case <-tick.C:
						say("[%s] %s: still working (%s): %s", phase, s.Host, since(t0), s.Action)
					}
				}
			}()
			sctx, cancel := context.WithTimeout(ctx, timeout)
			err := s.Do(sctx)
			cancel()
			close(done)
			if err != nil && sctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
				err = fmt.Errorf("no result after %s, the step's deadline: %w", timeout, err)
			}
			if err != nil {
				errs[i] = fmt.Errorf("phase %s, host %s: %s: %w", phase, s.Host, s.Action, err)
				return
			}
			say("[%s] %s: ok (%s)", phase, s.Host, since(t0))
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Summary is the closing line of a run.
func (r Report) Summary(dry bool) string {
	if dry {
		if r.Steps == 0 {
			return "plan: nothing to do; the cluster is as the spec says"
		}
		var names []string
		for _, p := range r.Phases {
			if p.Steps > 0 {
				names = append(names, fmt.Sprintf("%s %d", p.Name, p.Steps))
			}
		}
		return fmt.Sprintf("plan: %d step(s) (%s); nothing was changed", r.Steps, strings.Join(names, ", "))
	}
	if r.Steps == 0 {
		return fmt.Sprintf("up: nothing changed; every phase found the cluster as the spec says (%s)", r.Duration.Round(time.Millisecond))
	}
	return fmt.Sprintf("up: done: %d step(s) in %s", r.Steps, r.Duration.Round(time.Millisecond))
}
