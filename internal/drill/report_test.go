package drill

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/spec"
)

func s(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }

// steady makes one op every 100 ms from a to b, each taking 10 ms.
func steady(a, b float64, id string) []Op {
	var out []Op
	i := 0
	for t := a; t < b-1e-9; t += 0.1 {
		o := Op{Start: s(t), End: s(t + 0.01), Outcome: OK}
		if id != "" {
			o.ID = fmt.Sprintf("%s-%d", id, i)
			i++
		}
		out = append(out, o)
	}
	return out
}

var marks = Marks{Fault: s(10), Heal: s(20), Healthy: s(25), End: s(30)}

func TestWindowsFailedAndStalled(t *testing.T) {
	ops := steady(0, 10, "")
	// A failure at 10.5 s, ops failing until 13 s, a success at 13.0-13.01.
	for t0 := 10.5; t0 < 13; t0 += 0.5 {
		ops = append(ops, Op{Start: s(t0), End: s(t0 + 0.4), Outcome: Failed, Kind: "refused"})
	}
	ops = append(ops, steady(13, 15, "")...)
	// A stalled op at 16 s (2 s, then succeeds) is a second window.
	ops = append(ops, Op{Start: s(16), End: s(18), Outcome: OK})
	ops = append(ops, steady(18.5, 30, "")...)
	ws := Windows(ops, marks.Fault, marks.End)
	if len(ws) != 2 {
		t.Fatalf("windows %v, want 2", ws)
	}
	if ws[0].From != s(10.5) || ws[0].To != s(13.01) {
		t.Errorf("first window %v..%v, want 10.5..13.01", ws[0].From, ws[0].To)
	}
	if ws[1].From != s(16) || ws[1].To != s(18) {
		t.Errorf("second window %v..%v, want 16..18 (a stalled op that then succeeded)", ws[1].From, ws[1].To)
	}
	r := Analyze(WorkloadRecord{Name: "db", Ops: ops}, marks)
	if r.WindowS != 2.51 || r.MaxWindowS != 2.51 || r.Windows != 2 {
		t.Errorf("window %.2f max %.2f n %d, want 2.51 2.51 2", r.WindowS, r.MaxWindowS, r.Windows)
	}
	if r.ByKind["refused"] != 5 || r.Errors != 5 {
		t.Errorf("errors %d %v, want 5 refused", r.Errors, r.ByKind)
	}
}

// A long stalled operation that overlaps a window closed by other clients'
// successes opens no further windows.
func TestOverlappingStallOneWindow(t *testing.T) {
	ops := steady(0, 10, "")
	ops = append(ops, Op{Start: s(10.2), End: s(12.2), Outcome: Unknown, Kind: "timeout"},
		Op{Start: s(10.3), End: s(10.5), Outcome: Failed, Kind: "1047"})
	ops = append(ops, steady(10.6, 30, "")...)
	ws := Windows(ops, marks.Fault, marks.End)
	if len(ws) != 1 || ws[0].From != s(10.2) || ws[0].To != s(10.61) {
		t.Errorf("windows %v, want one from 10.2 to 10.61", ws)
	}
}

// Reads that go on while writes wait do not close the window.
func TestReadsDoNotCloseWindow(t *testing.T) {
	ops := steady(0, 10, "w")
	for t0 := 10.0; t0 < 16; t0 += 2 {
		ops = append(ops, Op{Start: s(t0), End: s(t0 + 2), Outcome: Unknown, Kind: "timeout", ID: fmt.Sprint(t0)})
	}
	for t0 := 10.0; t0 < 30; t0 += 0.1 {
		ops = append(ops, Op{Start: s(t0), End: s(t0 + 0.01), Outcome: OK, Read: true})
	}
	ops = append(ops, steady(16, 30, "w2")...)
	sortOps(ops)
	ws := Windows(ops, marks.Fault, marks.End)
	if len(ws) != 1 || ws[0].From != s(10) || ws[0].To != s(16.01) {
		t.Errorf("windows %v, want one from 10 to 16.01 (writes)", ws)
	}
}

func sortOps(ops []Op) {
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Start < ops[j].Start })
}

func TestWindowBeforeFaultIgnored(t *testing.T) {
	ops := append(steady(0, 5, ""), Op{Start: s(5), End: s(5.2), Outcome: Failed, Kind: "x"})
	ops = append(ops, steady(5.5, 30, "")...)
	if ws := Windows(ops, marks.Fault, marks.End); len(ws) != 0 {
		t.Errorf("a baseline failure opened a window after the fault: %v", ws)
	}
}

func TestBlockedCallCountsUntilEnd(t *testing.T) {
	ops := append(steady(0, 10, ""), Op{Start: s(12), End: 0, Outcome: Blocked})
	r := Analyze(WorkloadRecord{Name: "cache", Ops: ops}, marks)
	if !r.WindowOpen || r.WindowS != 18 {
		t.Errorf("window %.2f open %v, want 18 s open (blocked from 12 s to the end)", r.WindowS, r.WindowOpen)
	}
	if r.MaxMs != 18000 {
		t.Errorf("max %.0f ms, want 18000", r.MaxMs)
	}
	// The cache is held to its worst call: the blocked one.
	rep := Build(RunRecord{Scenario: "cut-node", Marks: marks, Recovered: true, Workloads: []WorkloadRecord{{Name: "cache", Ops: ops}}}, DefaultTargets())
	if rep.Verdict != VerdictMissed || len(rep.Misses) != 1 || !strings.Contains(rep.Misses[0], "cache: worst call 18000 ms, target 500ms") {
		t.Errorf("verdict %s misses %v, want one miss naming the worst call", rep.Verdict, rep.Misses)
	}
	// rpc is held to its window: open until the end.
	rep = Build(RunRecord{Scenario: "cut-node", Marks: marks, Recovered: true, Workloads: []WorkloadRecord{{Name: "rpc", Ops: ops}}}, DefaultTargets())
	if rep.Verdict != VerdictMissed || len(rep.Misses) != 1 || !strings.Contains(rep.Misses[0], "rpc: no success") {
		t.Errorf("verdict %s misses %v, want one miss naming the open window", rep.Verdict, rep.Misses)
	}
}

// The run's end cuts every client short: an operation that had run for
// less than the stall threshold then opens no window.
func TestCutShortAtEndNoWindow(t *testing.T) {
	ops := append(steady(0, 29.9, ""), Op{Start: s(29.95), End: 0, Outcome: Blocked})
	r := Analyze(WorkloadRecord{Name: "db", Ops: ops}, marks)
	if r.Windows != 0 || r.Errors != 0 {
		t.Errorf("windows %d errors %d, want none for an operation cut short by the end", r.Windows, r.Errors)
	}
}

func TestPercentilesAndThroughput(t *testing.T) {
	var ops []Op
	// Baseline: 100 ops of 1..100 ms in 10 s.
	for i := 1; i <= 100; i++ {
		st := s(float64(i-1) * 0.1)
		ops = append(ops, Op{Start: st, End: st + time.Duration(i)*time.Millisecond, Outcome: OK})
	}
	// Fault: 25 ops in 10 s (a quarter of the baseline).
	for i := 0; i < 25; i++ {
		st := s(10 + float64(i)*0.4)
		ops = append(ops, Op{Start: st, End: st + 5*time.Millisecond, Outcome: OK})
	}
	r := Analyze(WorkloadRecord{Name: "db", Ops: ops}, marks)
	b, f := r.Phases[0], r.Phases[1]
	if b.P50Ms != 50 || b.P99Ms != 99 || b.MaxMs != 100 {
		t.Errorf("baseline p50/p99/max %.0f/%.0f/%.0f, want 50/99/100", b.P50Ms, b.P99Ms, b.MaxMs)
	}
	if b.PerSecond != 10 || f.PerSecond != 2.5 || f.VsBaseline != 0.25 {
		t.Errorf("throughput %.1f, %.1f (%.2f), want 10, 2.5 (0.25)", b.PerSecond, f.PerSecond, f.VsBaseline)
	}
	if r.Windows != 0 {
		t.Errorf("no failure, yet %d windows", r.Windows)
	}
}

// A fabricated lost write: acknowledged, missing at verification. It must
// be caught, with its id and time, and make the verdict "data lost".
func TestLostWriteCaught(t *testing.T) {
	ops := steady(0, 30, "row")
	ops = append(ops, Op{Start: s(11), End: s(12), Outcome: Unknown, Kind: "invalid connection", ID: "u-1"},
		Op{Start: s(11.5), End: s(12.5), Outcome: Unknown, Kind: "timeout", ID: "u-2"})
	present := map[string]bool{"u-2": true}
	for _, o := range ops {
		if o.ID != "row-123" && strings.HasPrefix(o.ID, "row-") {
			present[o.ID] = true
		}
	}
	acked, unknown, committed, lost := LedgerCheck(ops, present)
	if acked != 300 || unknown != 2 || committed != 1 {
		t.Errorf("acked %d unknown %d committed %d, want 300 2 1", acked, unknown, committed)
	}
	if len(lost) != 1 || lost[0].ID != "row-123" || lost[0].At.Round(time.Millisecond) != s(12.31).Round(time.Millisecond) {
		t.Fatalf("lost %v, want row-123 acked at 12.31 s", lost)
	}
	db := &DBLoss{Acked: acked, Unknown: unknown, UnknownCommitted: committed, Lost: lost, BankTotal: 1000, BankExpected: 1000, Verified: true}
	rep := Report{Scenarios: []ScenarioReport{Build(RunRecord{Scenario: "kill-db", Node: "ctl1", Marks: marks, Recovered: true,
		Workloads: []WorkloadRecord{{Name: "db", Ops: ops, DB: db}}}, DefaultTargets())}}
	if got := rep.Scenarios[0].Verdict; got != VerdictLost || rep.ExitCode() != ExitLost {
		t.Errorf("verdict %q exit %d, want data lost, 3", got, rep.ExitCode())
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "DATA LOST") || !strings.Contains(text.String(), "row-123") {
		t.Errorf("text report does not name the lost row:\n%s", text.String())
	}
	var j struct {
		Scenarios []struct {
			Name          string
			Node          string
			HealthyAfterS float64
			UpActed       bool
			Verdict       string
			Workloads     []map[string]any
		}
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(buf.Bytes(), &j); err != nil {
		t.Fatal(err)
	}
	w := j.Scenarios[0].Workloads[0]
	for _, k := range []string{"name", "windowS", "p99Ms", "maxMs", "errors", "acked", "lost", "unknown", "unknownCommitted"} {
		if _, ok := w[k]; !ok {
			t.Errorf("json workload has no %q: %v", k, w)
		}
	}
	if w["lost"].(float64) != 1 || j.Scenarios[0].HealthyAfterS != 5 {
		t.Errorf("json lost %v healthyAfterS %v, want 1 and 5", w["lost"], j.Scenarios[0].HealthyAfterS)
	}
}

// A bank read that saw money created is caught even when the final total
// is right.
func TestBankBadReadCaught(t *testing.T) {
	db := &DBLoss{BankTotal: 1000, BankExpected: 1000, Verified: true, BadReads: []Evidence{{ID: "read", At: s(14), What: "total 1010, want 1000"}}}
	sc := Build(RunRecord{Scenario: "cut-node", Marks: marks, Recovered: true, Workloads: []WorkloadRecord{{Name: "db", Ops: steady(0, 30, ""), DB: db}}}, DefaultTargets())
	if sc.Verdict != VerdictLost {
		t.Errorf("verdict %s, want data lost", sc.Verdict)
	}
}

// A duplicated message is counted, not lost; a confirmed message never
// delivered is lost.
func TestMessagesDuplicateAndLoss(t *testing.T) {
	ops := steady(0, 30, "m")
	ops = append(ops, Op{Start: s(12), End: s(17), Outcome: Unknown, Kind: "confirm timeout", ID: "m-x"})
	var delivered []string
	for _, o := range ops {
		if o.ID != "m-200" && o.ID != "m-x" {
			delivered = append(delivered, o.ID)
		}
	}
	delivered = append(delivered, "m-5", "m-5", "m-7")
	confirmed, unknown, dups, lost := MessageCheck(ops, delivered)
	if confirmed != 300 || unknown != 1 || dups != 3 {
		t.Errorf("confirmed %d unknown %d dups %d, want 300 1 3", confirmed, unknown, dups)
	}
	if len(lost) != 1 || lost[0].ID != "m-200" {
		t.Fatalf("lost %v, want m-200", lost)
	}
	mq := &MQLoss{Confirmed: confirmed, Unknown: unknown, Duplicates: dups, Lost: lost, Verified: true}
	rep := Report{Scenarios: []ScenarioReport{Build(RunRecord{Scenario: "kill-mq", Marks: marks, Recovered: true, Workloads: []WorkloadRecord{{Name: "mq", Ops: ops, MQ: mq}}}, DefaultTargets())}}
	if rep.ExitCode() != ExitLost {
		t.Errorf("exit %d, want 3", rep.ExitCode())
	}
	var buf bytes.Buffer
	_ = rep.WriteJSON(&buf)
	for _, k := range []string{`"confirmed": 300`, `"lost": 1`, `"duplicates": 3`} {
		if !strings.Contains(buf.String(), k) {
			t.Errorf("json has no %s", k)
		}
	}
	// Without the loss, duplicates alone are no finding.
	mq.Lost = nil
	rep = Report{Scenarios: []ScenarioReport{Build(RunRecord{Scenario: "kill-mq", Marks: marks, Recovered: true, Workloads: []WorkloadRecord{{Name: "mq", Ops: ops, MQ: mq}}}, DefaultTargets())}}
	if rep.ExitCode() != ExitHeld {
		t.Errorf("duplicates only: exit %d (%v), want 0", rep.ExitCode(), rep.Scenarios[0].Misses)
	}
}

func TestTargetMissNamed(t *testing.T) {
	ops := steady(0, 10, "")
	ops = append(ops, Op{Start: s(10), End: s(22), Outcome: Failed, Kind: "timeout"})
	ops = append(ops, steady(22, 30, "")...)
	rep := Report{Scenarios: []ScenarioReport{Build(RunRecord{Scenario: "freeze-node", Marks: marks, Recovered: true, Workloads: []WorkloadRecord{{Name: "db", Ops: ops}}}, DefaultTargets())}}
	sc := rep.Scenarios[0]
	if rep.ExitCode() != ExitMissed || len(sc.Misses) != 1 || !strings.Contains(sc.Misses[0], "db: outage window 12.01 s") {
		t.Errorf("exit %d misses %v, want 1 and the db window named", rep.ExitCode(), sc.Misses)
	}
}

func TestHTMLOneChartPerScenario(t *testing.T) {
	var rep Report
	for _, name := range []string{"kill-db", "cut-node"} {
		rep.Scenarios = append(rep.Scenarios, Build(RunRecord{Scenario: name, Node: "ctl1", Marks: marks, Recovered: true,
			Workloads: []WorkloadRecord{{Name: "db", Ops: steady(0, 30, "")}, {Name: "mq", Ops: steady(0, 30, "")}, {Name: "rpc", Skipped: "no python"}}}, DefaultTargets()))
	}
	var buf bytes.Buffer
	if err := rep.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	h := buf.String()
	if n := strings.Count(h, "<svg"); n != 2 {
		t.Errorf("%d charts, want 2", n)
	}
	for _, bad := range []string{"<script", "http://", "https://", "@import", "url("} {
		if bad == "http://" {
			h2 := strings.ReplaceAll(h, `xmlns="http://www.w3.org/2000/svg"`, "")
			if strings.Contains(h2, bad) {
				t.Errorf("page refers to %s", bad)
			}
			continue
		}
		if strings.Contains(h, bad) {
			t.Errorf("page contains %s", bad)
		}
	}
}

func TestOnlyTargetDegrades(t *testing.T) {
	base := RunRecord{Scenario: "clock-stop", Node: "cmp1", Marks: marks, Recovered: true, OnlyTarget: true}
	for _, c := range []struct {
		during []string
		misses int
	}{
		{[]string{"ntp cmp1: chronyd does not answer"}, 0},
		{nil, 1},
		{[]string{"ntp cmp1: chronyd does not answer", "galera ctl2: not synced"}, 1},
	} {
		r := base
		r.StatusDuring = c.during
		if got := Build(r, DefaultTargets()); len(got.Misses) != c.misses {
			t.Errorf("status during %v: misses %v, want %d", c.during, got.Misses, c.misses)
		}
	}
}

func TestSummaryMediansAndWorst(t *testing.T) {
	mk := func(window, healthy float64, lost int, recovered bool) ScenarioReport {
		return ScenarioReport{Name: "kill-db", Recovered: recovered, HealthyAfterS: healthy,
			Workloads: []WorkloadReport{{Name: "db", MaxWindowS: window, MaxMs: window * 1000, Lost: &lost}, {Name: "rpc", Skipped: "no python"}}}
	}
	rep := Report{Scenarios: []ScenarioReport{mk(6, 10, 0, true), mk(2, 30, 1, true), mk(9, 0, 0, false)}}
	rows := rep.Summarize()
	if len(rows) != 1 {
		t.Fatalf("rows %v, want one (db; rpc skipped)", rows)
	}
	r := rows[0]
	if r.Runs != 3 || r.WindowS != (Figure{6, 9}) || r.Lost != 1 || r.HealthyAfterS != (Figure{20, 30}) || r.NotRecovered != 1 {
		t.Errorf("summary %+v", r)
	}
}

// The targets come from the spec: a window the defaults miss is held under
// a looser spec target, and kill-mq holds rpc to its own, tighter window.
func TestTargetsFromSpec(t *testing.T) {
	ops := steady(0, 10, "")
	ops = append(ops, Op{Start: s(10.5), End: s(12), Outcome: Failed, Kind: "refused"})
	ops = append(ops, steady(12, 30, "")...)
	build := func(scenario, workload string, tg Targets) ScenarioReport {
		return Build(RunRecord{Scenario: scenario, Marks: marks, Recovered: true, Workloads: []WorkloadRecord{{Name: workload, Ops: ops}}}, tg)
	}
	if r := build("freeze-node", "rpc", DefaultTargets()); r.Verdict != VerdictHeld {
		t.Errorf("rpc window 1.5 s after a freeze: %s %v, want held (target 10 s)", r.Verdict, r.Misses)
	}
	if r := build("kill-mq", "rpc", DefaultTargets()); r.Verdict != VerdictMissed || len(r.Misses) != 1 || !strings.Contains(r.Misses[0], "rpc: outage window 1.51 s, target 1s") {
		t.Errorf("rpc window 1.5 s on kill-mq: %s %v, want missed, target 1s", r.Verdict, r.Misses)
	}
	if r := build("freeze-node", "db", DefaultTargets()); r.Verdict != VerdictHeld {
		t.Errorf("db window 1.5 s: %s %v, want held (3 s)", r.Verdict, r.Misses)
	}
	var c spec.Cluster
	one := spec.Duration{Duration: time.Second}
	c.Spec.Drill.Targets.DB.Window = &one
	c.ApplyDefaults()
	tg := TargetsFrom(c.Spec.Drill.Targets)
	if r := build("freeze-node", "db", tg); r.Verdict != VerdictMissed || !strings.Contains(strings.Join(r.Misses, ";"), "db: outage window 1.51 s, target 1s") {
		t.Errorf("db window 1.5 s, spec target 1 s: %s %v, want missed", r.Verdict, r.Misses)
	}
	if tg.Window["mq"] != 10*time.Second || tg.HealthyAfter != 90*time.Second {
		t.Errorf("defaults not kept beside the spec's target: %+v", tg)
	}
	// Healthy after: 95 s against 90 s.
	m := marks
	m.Healthy = m.Heal + s(95)
	m.End = m.Healthy + s(5)
	r := Build(RunRecord{Scenario: "kill-db", Marks: m, Recovered: true}, DefaultTargets())
	if r.Verdict != VerdictMissed || len(r.Misses) != 1 || !strings.Contains(r.Misses[0], "status healthy 95.0 s after the heal, target 1m30s") {
		t.Errorf("healthy 95 s after the heal: %s %v", r.Verdict, r.Misses)
	}
}

// cacheOps reads keys 0..n-1 in turn every 10 ms from a to b; the keys in
// miss (by number) miss once at their first read at or after from.
func cacheOps(a, b float64, keys int, miss map[int]float64) []Op {
	var out []Op
	i := 0
	for t := a; t < b-1e-9; t += 0.01 {
		o := Op{Start: s(t), End: s(t + 0.002), Outcome: OK}
		if at, ok := miss[i]; ok && t >= at {
			o.Kind, o.ID = "miss", fmt.Sprint(i)
			delete(miss, i)
		}
		out = append(out, o)
		i = (i + 1) % keys
	}
	return out
}

func TestCacheKeysMissedAndServedAgain(t *testing.T) {
	const keys = 300
	m := Marks{Fault: s(10), Heal: s(20), Healthy: s(25), End: s(60)}
	run := func(scenario string, hit int, miss map[int]float64) ScenarioReport {
		ops := cacheOps(0, 60, keys, miss)
		return Build(RunRecord{Scenario: scenario, Marks: m, Recovered: true, CacheServers: 3, CacheServersHit: hit,
			Workloads: []WorkloadRecord{{Name: "cache", Ops: ops, Keys: keys}}}, DefaultTargets())
	}
	third := map[int]float64{}
	for k := 0; k < 100; k++ {
		third[k] = 10
	}
	// One server of 3 lost: its third of the keys missed, served again
	// 0 s after the heal (no miss after it): held.
	r := run("kill-cache", 1, third)
	w := r.Workloads[0]
	if r.Verdict != VerdictHeld || *w.KeysMissed != 100 || w.KeysMissedPct != 33.3 || *w.ServedAgainS != 0 {
		t.Errorf("a third missed on kill-cache: %s %v, keys missed %d (%.1f %%), served again %v", r.Verdict, r.Misses, *w.KeysMissed, w.KeysMissedPct, *w.ServedAgainS)
	}
	// The same third missed on a scenario that reaches no cache server:
	// only 5 points are allowed.
	third = map[int]float64{}
	for k := 0; k < 100; k++ {
		third[k] = 10
	}
	r = run("kill-db", 0, third)
	if r.Verdict != VerdictMissed || len(r.Misses) != 1 || !strings.Contains(r.Misses[0], "cache: 100 of 300 keys missed (33.3 %), target 5.0 %") {
		t.Errorf("a third missed on kill-db: %s %v", r.Verdict, r.Misses)
	}
	// Keys that miss again 40 s after the heal: served again too late.
	late := map[int]float64{}
	for k := 0; k < 10; k++ {
		late[k] = 10
	}
	ops := cacheOps(0, 60, keys, late)
	ops = append(ops, Op{Start: s(55), End: s(55.001), Outcome: OK, Kind: "miss", ID: "7"})
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Start < ops[j].Start })
	r = Build(RunRecord{Scenario: "kill-cache", Marks: m, Recovered: true, CacheServers: 3, CacheServersHit: 1,
		Workloads: []WorkloadRecord{{Name: "cache", Ops: ops, Keys: keys}}}, DefaultTargets())
	if r.Verdict != VerdictMissed || len(r.Misses) != 1 || !strings.Contains(r.Misses[0], "cache: keys served again 35.0 s after the heal, target 30s") {
		t.Errorf("a miss 35 s after the heal: %s %v", r.Verdict, r.Misses)
	}
	// Still missing in the run's last second: open; a miss when the run
	// lasted past the target, else not judged.
	ops = append(cacheOps(0, 60, keys, nil), Op{Start: s(59.5), End: s(59.6), Outcome: OK, Kind: "miss", ID: "8"})
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Start < ops[j].Start })
	r = Build(RunRecord{Scenario: "kill-cache", Marks: m, Recovered: true, CacheServers: 3, CacheServersHit: 1,
		Workloads: []WorkloadRecord{{Name: "cache", Ops: ops, Keys: keys}}}, DefaultTargets())
	if r.Verdict != VerdictMissed || !r.Workloads[0].ServedAgainOpen || !strings.Contains(strings.Join(r.Misses, ";"), "keys still missed when the run ended, 40.0 s after the heal") {
		t.Errorf("missing at the end: %s %v", r.Verdict, r.Misses)
	}
	short := Marks{Fault: s(10), Heal: s(20), Healthy: s(25), End: s(30)}
	ops = append(cacheOps(0, 30, keys, nil), Op{Start: s(29.5), End: s(29.6), Outcome: OK, Kind: "miss", ID: "8"})
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Start < ops[j].Start })
	r = Build(RunRecord{Scenario: "kill-cache", Marks: short, Recovered: true, CacheServers: 3, CacheServersHit: 1,
		Workloads: []WorkloadRecord{{Name: "cache", Ops: ops, Keys: keys}}}, DefaultTargets())
	if r.Verdict != VerdictHeld {
		t.Errorf("still missing 10 s after the heal, when the run ended: %s %v, want not judged", r.Verdict, r.Misses)
	}
}

// Data loss is exit 3 with its evidence whatever the targets: a spec
// cannot make loss a target.
func TestLossIsExit3WithSpecTargets(t *testing.T) {
	var c spec.Cluster
	big := spec.Duration{Duration: 10 * time.Minute}
	c.Spec.Drill.Targets.DB.Window = &big
	c.ApplyDefaults()
	db := &DBLoss{Acked: 3, Verified: true, Lost: []Evidence{{ID: "row-2", At: s(12), What: "acknowledged insert missing at verification"}}}
	rep := Report{Scenarios: []ScenarioReport{Build(RunRecord{Scenario: "cut-node", Marks: marks, Recovered: true,
		Workloads: []WorkloadRecord{{Name: "db", Ops: steady(0, 30, ""), DB: db}}}, TargetsFrom(c.Spec.Drill.Targets))}}
	if rep.ExitCode() != ExitLost || len(rep.Scenarios[0].Losses) != 1 || !strings.Contains(rep.Scenarios[0].Losses[0], "row-2") {
		t.Errorf("exit %d losses %v, want 3 naming row-2", rep.ExitCode(), rep.Scenarios[0].Losses)
	}
}
