package drill

import (
	"fmt"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/spec"
)

// Targets are what a drill holds the layer to (spec.drill.targets). Data
// loss is never a target: any acknowledged write or confirmed message lost
// is a finding.
type Targets struct {
	// Window is the longest outage window allowed per workload.
	Window map[string]time.Duration `json:"window"`
	// ScenarioWindow overrides Window for one scenario and workload
	// (kill-mq's rpc window).
	ScenarioWindow map[string]map[string]time.Duration `json:"scenarioWindow,omitempty"`
	// CacheWorstCall bounds the cache workload's slowest call from the
	// fault on.
	CacheWorstCall time.Duration `json:"cacheWorstCall"`
	// CacheMissedExtraPoints: the share of keys missed may be the share
	// of the servers the fault reaches plus this many percentage points.
	CacheMissedExtraPoints float64 `json:"cacheMissedExtraPoints"`
	// CacheServedAgain bounds the time from the heal to the last miss.
	CacheServedAgain time.Duration `json:"cacheServedAgain"`
	// HealthyAfter bounds the time from the heal to status healthy.
	HealthyAfter time.Duration `json:"healthyAfter"`
}

// TargetsFrom reads the targets of a defaulted spec.
func TargetsFrom(d spec.DrillTargets) Targets {
	dur := func(p *spec.Duration) time.Duration {
		if p == nil {
			return 0
		}
		return p.Duration
	}
	t := Targets{
		Window: map[string]time.Duration{"db": dur(d.DB.Window), "mq": dur(d.MQ.Window), "rpc": dur(d.RPC.Window)},
		ScenarioWindow: map[string]map[string]time.Duration{
			"kill-mq": {"rpc": dur(d.RPC.KillMQWindow)},
		},
		CacheWorstCall:   dur(d.Cache.WorstCall),
		CacheServedAgain: dur(d.Cache.ServedAgainWithin),
		HealthyAfter:     dur(d.HealthyAfter),
	}
	if d.Cache.MissedExtraPoints != nil {
		t.CacheMissedExtraPoints = *d.Cache.MissedExtraPoints
	}
	return t
}

// DefaultTargets are the targets when the spec gives none.
func DefaultTargets() Targets {
	var c spec.Cluster
	c.ApplyDefaults()
	return TargetsFrom(c.Spec.Drill.Targets)
}

// WindowFor is the window target of a workload in a scenario, and whether
// there is one.
func (t Targets) WindowFor(scenario, workload string) (time.Duration, bool) {
	if w, ok := t.ScenarioWindow[scenario][workload]; ok {
		return w, true
	}
	w, ok := t.Window[workload]
	return w, ok
}

// Verdicts of a scenario, worst last.
const (
	VerdictHeld   = "held"
	VerdictMissed = "missed"
	VerdictError  = "error"
	VerdictLost   = "data lost"
)

// ScenarioReport is one run of one scenario, computed from its record.
type ScenarioReport struct {
	Name          string           `json:"name"`
	Node          string           `json:"node"`
	Run           int              `json:"run,omitempty"` // 1-based, with --repeat
	HealthyAfterS float64          `json:"healthyAfterS"`
	Recovered     bool             `json:"recovered"`
	UpActed       bool             `json:"upActed"`
	UpDid         []string         `json:"upDid,omitempty"`
	Verdict       string           `json:"verdict"`
	Misses        []string         `json:"misses,omitempty"`
	Losses        []string         `json:"losses,omitempty"`
	FaultLog      []string         `json:"faultLog,omitempty"`
	Error         string           `json:"error,omitempty"`
	FaultS        float64          `json:"faultAtS"`
	HealS         float64          `json:"healAtS"`
	EndS          float64          `json:"endS"`
	Workloads     []WorkloadReport `json:"workloads"`
	// Series is ops and errors per second per workload, for the chart.
	Series map[string]Series `json:"-"`
}

// Series is a workload's successful operations and errors per second.
type Series struct {
	OK, Err []int
}

// Report is every scenario run of one 'drill run'.
type Report struct {
	Scenarios []ScenarioReport `json:"scenarios"`
	// Summary is the medians and the worst per scenario and workload,
	// with --repeat.
	Summary []SummaryRow `json:"summary,omitempty"`
}

// Build computes a scenario's report and its verdict from a run record.
func Build(rec RunRecord, t Targets) ScenarioReport {
	m := rec.Marks
	s := ScenarioReport{Name: rec.Scenario, Node: rec.Node, UpActed: rec.UpActed, UpDid: rec.UpDid, Recovered: rec.Recovered,
		FaultLog: rec.Fault, Error: rec.Error, FaultS: secs(m.Fault), HealS: secs(m.Heal), EndS: secs(m.End), Series: map[string]Series{}}
	if m.Healthy >= m.Heal && m.Heal > 0 {
		s.HealthyAfterS = secs(m.Healthy - m.Heal)
	}
	for _, w := range rec.Workloads {
		wr := Analyze(w, m)
		s.Workloads = append(s.Workloads, wr)
		s.Series[w.Name] = PerSecond(w.Ops, m.End)
		if wr.Skipped != "" {
			continue
		}
		for _, e := range wr.Evidence {
			s.Losses = append(s.Losses, fmt.Sprintf("%s: %s %s at %.2f s", w.Name, e.What, e.ID, e.At.Seconds()))
		}
		if lim, ok := t.WindowFor(rec.Scenario, w.Name); ok {
			if wr.WindowOpen {
				s.Misses = append(s.Misses, fmt.Sprintf("%s: no success after the outage began at %.1f s until the run ended", w.Name, windowFrom(w.Ops, m)))
			} else if time.Duration(wr.MaxWindowS*float64(time.Second)) > lim {
				s.Misses = append(s.Misses, fmt.Sprintf("%s: outage window %.2f s, target %s", w.Name, wr.MaxWindowS, lim))
			}
		}
		if w.Name == "cache" {
			s.Misses = append(s.Misses, cacheMisses(wr, rec, t)...)
		}
		if !wr.Verified {
			s.Misses = append(s.Misses, fmt.Sprintf("%s: verification could not complete", w.Name))
		}
	}
	if rec.OnlyTarget {
		if len(rec.StatusDuring) == 0 {
			s.Misses = append(s.Misses, fmt.Sprintf("status named no problem while the fault on %s held", rec.Node))
		}
		for _, p := range rec.StatusDuring {
			if !strings.Contains(p, rec.Node) {
				s.Misses = append(s.Misses, "something else degraded during the fault: "+p)
			}
		}
	}
	if !rec.Recovered {
		s.Misses = append(s.Misses, fmt.Sprintf("status not healthy within %s of the heal", t.HealthyAfter))
	} else if t.HealthyAfter > 0 && m.Healthy-m.Heal > t.HealthyAfter {
		s.Misses = append(s.Misses, fmt.Sprintf("status healthy %.1f s after the heal, target %s", s.HealthyAfterS, t.HealthyAfter))
	}
	switch {
	case len(s.Losses) > 0:
		s.Verdict = VerdictLost
	case rec.Error != "":
		s.Verdict = VerdictError
	case len(s.Misses) > 0:
		s.Verdict = VerdictMissed
	default:
		s.Verdict = VerdictHeld
	}
	return s
}

// cacheMisses judges the cache workload: its worst call, the share of keys
// missed against the share of servers the fault reaches, and how soon the
// keys were served again after the heal.
func cacheMisses(wr WorkloadReport, rec RunRecord, t Targets) []string {
	var out []string
	if t.CacheWorstCall > 0 && wr.WorstCallMs > float64(t.CacheWorstCall.Milliseconds()) {
		out = append(out, fmt.Sprintf("cache: worst call %.0f ms, target %s", wr.WorstCallMs, t.CacheWorstCall))
	}
	if wr.Keys != nil && *wr.Keys > 0 && wr.KeysMissed != nil {
		allowed := t.CacheMissedExtraPoints
		if n := rec.CacheServers; n > 0 {
			allowed += 100 * float64(min(rec.CacheServersHit, n)) / float64(n)
		}
		if wr.KeysMissedPct > allowed+1e-9 {
			out = append(out, fmt.Sprintf("cache: %d of %d keys missed (%.1f %%), target %.1f %% (%d of %d servers reached + %g points)",
				*wr.KeysMissed, *wr.Keys, wr.KeysMissedPct, allowed, rec.CacheServersHit, rec.CacheServers, t.CacheMissedExtraPoints))
		}
	}
	if wr.ServedAgainS != nil && t.CacheServedAgain > 0 {
		switch {
		case wr.ServedAgainOpen && rec.Marks.End-rec.Marks.Heal >= t.CacheServedAgain:
			out = append(out, fmt.Sprintf("cache: keys still missed when the run ended, %.1f s after the heal, target %s", secs(rec.Marks.End-rec.Marks.Heal), t.CacheServedAgain))
		case !wr.ServedAgainOpen && time.Duration(*wr.ServedAgainS*float64(time.Second)) > t.CacheServedAgain:
			out = append(out, fmt.Sprintf("cache: keys served again %.1f s after the heal, target %s", *wr.ServedAgainS, t.CacheServedAgain))
		}
	}
	return out
}

func windowFrom(ops []Op, m Marks) float64 {
	ws := Windows(ops, m.Fault, m.End)
	if len(ws) == 0 {
		return 0
	}
	return ws[len(ws)-1].From.Seconds()
}

// PerSecond buckets operations by the second they ended in (blocked ones
// by the run's end).
func PerSecond(ops []Op, end time.Duration) Series {
	n := int(end/time.Second) + 1
	s := Series{OK: make([]int, n), Err: make([]int, n)}
	for _, o := range closeBlocked(ops, end) {
		i := int(o.End / time.Second)
		if i < 0 || i >= n {
			continue
		}
		if o.Outcome == OK {
			s.OK[i]++
		} else {
			s.Err[i]++
		}
	}
	return s
}

// Exit codes of 'drill run'.
const (
	ExitHeld   = 0
	ExitMissed = 1
	ExitLost   = 3
)

// ExitCode is 3 when any scenario lost data, 1 when any missed a target
// or failed, else 0.
func (r Report) ExitCode() int {
	code := ExitHeld
	for _, s := range r.Scenarios {
		switch s.Verdict {
		case VerdictLost:
			return ExitLost
		case VerdictMissed, VerdictError:
			code = ExitMissed
		}
	}
	return code
}
