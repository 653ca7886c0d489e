package drill

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// Env is what a drill run needs from the rest of hastack, injected so that
// the drill knows neither the lab nor SSH.
type Env struct {
	Faults      Faulter
	Controllers []string
	Computes    []string
	// Status reports whether the layer is healthy, and its problems.
	Status func(ctx context.Context) (healthy bool, problems []string)
	// Up runs 'hastack up': whether it changed anything, and what.
	Up func(ctx context.Context) (acted bool, did []string, err error)
	// Restart runs 'hastack restart' (rolling maintenance) and returns
	// what it did; nil: the rolling-restart scenario stops and starts the
	// engines itself.
	Restart func(ctx context.Context) ([]string, error)
	// Membership takes the target out of the cluster ('hastack node
	// remove') and adds it back ('hastack node add'), and returns what it
	// did; nil: the remove-add scenario cannot run.
	Membership func(ctx context.Context, target string) ([]string, error)
	// Workloads; a nil option skips the workload.
	DB *DBOptions
	MQ *MQOptions
	// RPCConf and CacheConf are the rendered service files the rpc and
	// cache workloads are configured from; they run on a node of Nodes.
	RPCConf, CacheConf []byte
	Nodes              map[string]node.Node
	// Skipped names workloads that cannot run here, and why.
	Skipped map[string]string

	Baseline time.Duration // at least 10 s
	Hold     time.Duration
	// Settle is how long the recovery waits for status healthy on its
	// own before it runs 'up'; RecoveryBound bounds the whole recovery.
	Settle        time.Duration
	RecoveryBound time.Duration
	// After is how long the workloads keep running once status is
	// healthy, before verification. When the fault reached a cache
	// server, they run at least until Targets.CacheServedAgain after the
	// heal, so that the keys served again can be judged.
	After time.Duration
	// Targets are what the runs are held to; recorded with each run.
	Targets Targets
	Log     func(format string, a ...any)
}

func (e *Env) logf(format string, a ...any) {
	if e.Log != nil {
		e.Log(format, a...)
	}
}

// osloRunner picks the node the OpenStack clients run on: a controller
// that is not the target (for power-loss, which kills every controller, a
// compute node), or "" when there is none.
func (e *Env) osloRunner(sc Scenario, target string) string {
	if e.Nodes == nil {
		return ""
	}
	if sc.Name == "power-loss" {
		if len(e.Computes) > 0 {
			return e.Computes[0]
		}
		return ""
	}
	for _, c := range e.Controllers {
		if c != target {
			return c
		}
	}
	return ""
}

// waitHealthy polls status once a second until healthy or the bound.
func (e *Env) waitHealthy(ctx context.Context, bound time.Duration) ([]string, bool) {
	deadline := time.Now().Add(bound)
	var last []string
	for {
		c, cancel := context.WithTimeout(ctx, 15*time.Second)
		ok, problems := e.Status(c)
		cancel()
		if ok {
			return nil, true
		}
		last = problems
		if time.Now().After(deadline) || ctx.Err() != nil {
			return last, false
		}
		sleepCtx(ctx, time.Second)
	}
}

// Run runs one scenario against target and returns its record. It always
// undoes the fault and, when the fault's undo is 'hastack up', runs it,
// also when ctx is cancelled (Ctrl-C) or a step fails; the record's Error
// says what went wrong.
func Run(ctx context.Context, e *Env, sc Scenario, target string) (rec RunRecord) {
	targets := e.Targets
	rec = RunRecord{Scenario: sc.Name, Node: target, OnlyTarget: sc.OnlyTarget, Targets: &targets,
		CacheServers: len(e.Controllers), CacheServersHit: sc.CacheServers}
	if sc.CacheServers == AllServers {
		rec.CacheServersHit = len(e.Controllers)
	}
	start := time.Now()
	rec.Started = start
	since := func() time.Duration { return time.Since(start) }
	var errs []string
	fail := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		errs = append(errs, msg)
		e.logf("%s: %s", sc.Name, msg)
	}
	defer func() { rec.Error = strings.Join(errs, "; ") }()

	// Workloads.
	wctx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	cctx, stopConsume := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsume()
	var wg sync.WaitGroup
	var db *DB
	var mq *MQ
	var dbRec, mqRec *Recorder
	if e.DB != nil {
		dbRec = NewRecorder(start)
		var err error
		if db, err = NewDB(ctx, *e.DB, dbRec); err != nil {
			fail("%v", err)
			return rec
		}
		defer db.Close(context.WithoutCancel(ctx))
		wg.Add(1)
		go func() { defer wg.Done(); db.Run(wctx) }()
	}
	if e.MQ != nil {
		mqRec = NewRecorder(start)
		var err error
		if mq, err = NewMQ(ctx, e.MQ.TargetFirst(target), mqRec); err != nil {
			fail("%v", err)
			stopWork()
			wg.Wait()
			return rec
		}
		defer mq.Close()
		wg.Add(1)
		go func() { defer wg.Done(); mq.Publish(wctx) }()
		consumed := make(chan struct{})
		go func() { defer close(consumed); mq.Consume(cctx) }()
		defer func() { stopConsume(); <-consumed }()
	}
	var oslos []*Oslo
	defer func() {
		for _, o := range oslos {
			o.Stop()
		}
	}()
	skipped := map[string]string{}
	for k, v := range e.Skipped {
		skipped[k] = v
	}
	if runner := e.osloRunner(sc, target); runner != "" {
		for _, w := range []struct {
			mode string
			conf []byte
		}{{"rpc", e.RPCConf}, {"cache", e.CacheConf}} {
			if _, skip := skipped[w.mode]; skip || w.conf == nil {
				continue
			}
			o, err := StartOslo(ctx, e.Nodes[runner], w.mode, w.conf, NewRecorder(start), start)
			if err != nil {
				skipped[w.mode] = err.Error()
				continue
			}
			e.logf("%s: %s workload (%s) runs on %s", sc.Name, w.mode, "oslo", runner)
			oslos = append(oslos, o)
		}
	}
	rec.Marks.Warm = since()
	e.logf("%s: baseline %s, workloads warm", sc.Name, e.Baseline)
	sleepCtx(ctx, e.Baseline)

	// The fault. From here on the undo always runs.
	undone := false
	undo := func() {
		if undone {
			return
		}
		undone = true
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		lines, err := sc.Undo(uctx, e.Faults, e, target)
		rec.Fault = append(rec.Fault, lines...)
		for _, l := range lines {
			e.logf("%s", l)
		}
		if err != nil {
			fail("undo: %v", err)
		}
		if sc.UpHeals || ctx.Err() != nil {
			e.logf("%s: heal: hastack up", sc.Name)
			acted, did, err := e.Up(uctx)
			rec.UpActed = rec.UpActed || acted
			rec.UpDid = append(rec.UpDid, did...)
			if err != nil {
				fail("up: %v", err)
			}
		}
	}
	defer undo()
	if ctx.Err() == nil {
		rec.Marks.Fault = since()
		e.logf("%s: fault on %s", sc.Name, target)
		lines, err := sc.Inject(ctx, e.Faults, e, target)
		rec.Fault = append(rec.Fault, lines...)
		for _, l := range lines {
			e.logf("%s", l)
		}
		if err != nil {
			fail("fault: %v", err)
		}
		if !sc.NoHold && err == nil {
			// What status says while the fault holds, once.
			holdEnd := time.Now().Add(e.Hold)
			sleepCtx(ctx, min(e.Hold/2, 5*time.Second))
			// Bounded by the hold's end: a frozen node makes probes
			// wait, and the hold must not grow.
			sctx, cancel := context.WithDeadline(ctx, holdEnd)
			_, problems := e.Status(sctx)
			cancel()
			rec.StatusDuring = problems
			for _, p := range problems {
				rec.Fault = append(rec.Fault, "status during the fault: "+p)
			}
			sleepCtx(ctx, time.Until(holdEnd))
		}
	}
	if ctx.Err() != nil {
		fail("interrupted: %v", ctx.Err())
	}
	rec.Marks.Heal = since()
	if rec.Marks.Heal <= rec.Marks.Fault {
		rec.Marks.Heal = rec.Marks.Fault + 1
	}
	undo()

	// Recovery: status healthy on its own, else 'up', bounded.
	rctx := context.WithoutCancel(ctx)
	settle := min(e.Settle, e.RecoveryBound)
	problems, ok := e.waitHealthy(rctx, settle)
	if !ok && ctx.Err() == nil {
		e.logf("%s: not healthy %s after the heal (%s): hastack up", sc.Name, settle, strings.Join(problems, "; "))
		uctx, cancel := context.WithTimeout(rctx, 5*time.Minute)
		acted, did, err := e.Up(uctx)
		cancel()
		rec.UpActed = rec.UpActed || acted
		rec.UpDid = append(rec.UpDid, did...)
		if err != nil {
			fail("up during recovery: %v", err)
		}
		rest := e.RecoveryBound - (since() - rec.Marks.Heal)
		problems, ok = e.waitHealthy(rctx, max(rest, time.Second))
	}
	rec.Marks.Healthy = since()
	rec.Recovered = ok
	if !ok {
		fail("status not healthy within %s of the heal: %s", e.RecoveryBound, strings.Join(problems, "; "))
	} else {
		e.logf("%s: healthy %.1f s after the heal", sc.Name, (rec.Marks.Healthy - rec.Marks.Heal).Seconds())
	}

	// Verification.
	after := e.After
	if rec.CacheServersHit > 0 && e.Targets.CacheServedAgain > 0 && hasOslo(oslos, "cache") && ctx.Err() == nil {
		after = max(after, rec.Marks.Heal+e.Targets.CacheServedAgain+time.Second-since())
	}
	sleepCtx(rctx, after)
	stopWork()
	rec.Marks.End = since()
	wg.Wait()
	vctx, cancel := context.WithTimeout(rctx, 2*time.Minute)
	defer cancel()
	if db != nil {
		rec.Workloads = append(rec.Workloads, db.Verify(vctx))
	}
	if mq != nil {
		mq.WaitDrained(vctx, 15*time.Second)
		stopConsume()
		rec.Workloads = append(rec.Workloads, mq.Verify())
	}
	for _, o := range oslos {
		if err := o.Stop(); err != nil {
			fail("%v", err)
		}
		rec.Workloads = append(rec.Workloads, o.Record())
	}
	oslos = nil
	for _, name := range []string{"rpc", "cache"} {
		if why, ok := skipped[name]; ok {
			rec.Workloads = append(rec.Workloads, WorkloadRecord{Name: name, Skipped: why})
		}
	}
	return rec
}

func hasOslo(os []*Oslo, mode string) bool {
	for _, o := range os {
		if o.mode == mode {
			return true
		}
	}
	return false
}

// ErrBusy is returned by Lock when another drill holds the lock.
var ErrBusy = errors.New("another drill is running")
