package drill

import (
	"fmt"
	"strings"
	"time"
)

// Targets are what a drill holds the layer to. Data loss is never a
// target: any acknowledged write or confirmed message lost is a finding.
type Targets struct {
	// Window is the longest outage window allowed per workload.
	Window map[string]time.Duration
	// HealthyAfter bounds the time from the heal to status healthy.
	HealthyAfter time.Duration
}

// DefaultTargets are the targets when the spec gives none.
func DefaultTargets() Targets {
	return Targets{
		Window:       map[string]time.Duration{"db": 10 * time.Second, "mq": 30 * time.Second, "rpc": 30 * time.Second, "cache": 2 * time.Second},
		HealthyAfter: 2 * time.Minute,
	}
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
		if lim, ok := t.Window[w.Name]; ok {
			if wr.WindowOpen {
				s.Misses = append(s.Misses, fmt.Sprintf("%s: no success after the outage began at %.1f s until the run ended", w.Name, windowFrom(w.Ops, m)))
			} else if time.Duration(wr.MaxWindowS*float64(time.Second)) > lim {
				s.Misses = append(s.Misses, fmt.Sprintf("%s: outage window %.2f s, target %s", w.Name, wr.MaxWindowS, lim))
			}
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
