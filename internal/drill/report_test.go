package drill

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
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
	rep := Build(RunRecord{Scenario: "cut-node", Marks: marks, Recovered: true, Workloads: []WorkloadRecord{{Name: "cache", Ops: ops}}}, DefaultTargets())
	if rep.Verdict != VerdictMissed || len(rep.Misses) != 1 || !strings.Contains(rep.Misses[0], "no success") {
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
