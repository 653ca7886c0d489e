package drill

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// StallThreshold is how long an operation may take before it counts as
// stalled: a stalled operation opens an outage window like a failed one.
const StallThreshold = time.Second

// Window is one outage as the clients saw it: from the start of the first
// failed or stalled operation to the end of the first successful operation
// that started after it. Open windows had no success until the run ended.
type Window struct {
	From time.Duration `json:"from"`
	To   time.Duration `json:"to"`
	Open bool          `json:"open,omitempty"`
}

// Len is the window's length.
func (w Window) Len() time.Duration { return w.To - w.From }

// bad: failed, outcome-unknown or stalled. An operation still running when
// the run ended is bad only if it had stalled by then: the end of the run
// cuts every client short, and that is no outage.
func bad(o Op) bool {
	if o.Outcome == Blocked {
		return o.Latency() > StallThreshold
	}
	return o.Outcome != OK || o.Latency() > StallThreshold
}

// Windows finds every outage window in ops (sorted by start) that ends
// after from. A blocked operation counts as blocked until end. Reads are
// left out when there are writes: a workload is out while its writes are.
func Windows(ops []Op, from, end time.Duration) []Window {
	var writes []Op
	for _, o := range ops {
		if !o.Read {
			writes = append(writes, o)
		}
	}
	if len(writes) > 0 {
		ops = writes
	}
	ops = closeBlocked(ops, end)
	var out []Window
	cursor := from
	for {
		// The first bad operation that started at or after cursor; for
		// the first window, also one that began before the fault and
		// failed or stalled after it. An operation that began before a
		// window closed belongs to that window.
		start := time.Duration(-1)
		for _, o := range ops {
			if !bad(o) || o.End < cursor || (len(out) > 0 && o.Start < cursor) {
				continue
			}
			s := max(o.Start, cursor)
			if start < 0 || s < start {
				start = s
			}
		}
		if start < 0 {
			return out
		}
		// The first success that started at or after it.
		stop := time.Duration(-1)
		for _, o := range ops {
			if o.Outcome == OK && o.Start >= start && (stop < 0 || o.End < stop) {
				stop = o.End
			}
		}
		if stop < 0 {
			return append(out, Window{From: start, To: end, Open: true})
		}
		out = append(out, Window{From: start, To: stop})
		cursor = stop + 1
	}
}

func closeBlocked(ops []Op, end time.Duration) []Op {
	out := make([]Op, len(ops))
	for i, o := range ops {
		if o.Outcome == Blocked || o.End < o.Start {
			o.Outcome, o.Kind = Blocked, "blocked"
			o.End = end
		}
		out[i] = o
	}
	return out
}

// Percentile is the q-quantile (0..1) of ds by nearest rank; 0 for none.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(math.Ceil(q*float64(len(s)))) - 1
	if rank < 0 {
		rank = 0
	}
	if rank >= len(s) {
		rank = len(s) - 1
	}
	return s[rank]
}

// PhaseStats are one workload's figures in one phase.
type PhaseStats struct {
	Phase     string  `json:"phase"`
	Ops       int     `json:"ops"`
	OK        int     `json:"ok"`
	Failed    int     `json:"failed"`
	P50Ms     float64 `json:"p50Ms"`
	P99Ms     float64 `json:"p99Ms"`
	MaxMs     float64 `json:"maxMs"`
	PerSecond float64 `json:"perS"`
	// VsBaseline is the throughput as a fraction of the baseline's.
	VsBaseline float64 `json:"vsBaseline"`
}

// WorkloadReport is one workload's figures for one run.
type WorkloadReport struct {
	Name    string  `json:"name"`
	Skipped string  `json:"skipped,omitempty"`
	WindowS float64 `json:"windowS"` // the first outage window at or after the fault
	// WindowOpen: no success after the window until the run ended.
	WindowOpen bool           `json:"windowOpen,omitempty"`
	Windows    int            `json:"windows"`
	MaxWindowS float64        `json:"maxWindowS"`
	P99Ms      float64        `json:"p99Ms"` // over the fault and recovery phases
	MaxMs      float64        `json:"maxMs"`
	Errors     int            `json:"errors"`
	ByKind     map[string]int `json:"errorsByKind,omitempty"`
	Phases     []PhaseStats   `json:"phases"`
	// db
	Acked            *int       `json:"acked,omitempty"`
	Lost             *int       `json:"lost,omitempty"`
	Unknown          *int       `json:"unknown,omitempty"`
	UnknownCommitted *int       `json:"unknownCommitted,omitempty"`
	BankOK           *bool      `json:"bankOK,omitempty"`
	Evidence         []Evidence `json:"evidence,omitempty"`
	// cache: reads from the fault on that missed (the key was set again);
	// the baseline's misses are the first reads of each key
	Misses *int `json:"misses,omitempty"`
	// cache: the slowest call from the fault on (a call still blocked
	// at the end counts until then); the distinct keys that missed from
	// the fault on, of Keys; the time from the heal to the last miss
	// (open: keys were still missed in the run's last second).
	WorstCallMs     float64  `json:"worstCallMs,omitempty"`
	Keys            *int     `json:"keys,omitempty"`
	KeysMissed      *int     `json:"keysMissed,omitempty"`
	KeysMissedPct   float64  `json:"keysMissedPct,omitempty"`
	ServedAgainS    *float64 `json:"servedAgainS,omitempty"`
	ServedAgainOpen bool     `json:"servedAgainOpen,omitempty"`
	// mq
	Confirmed  *int `json:"confirmed,omitempty"`
	Duplicates *int `json:"duplicates,omitempty"`
	Verified   bool `json:"verified"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
func secs(d time.Duration) float64 {
	return math.Round(float64(d)/1e7) / 100
}

// Analyze computes a workload's report from its record and the run's marks.
func Analyze(w WorkloadRecord, m Marks) WorkloadReport {
	r := WorkloadReport{Name: w.Name, Skipped: w.Skipped, ByKind: map[string]int{}}
	ops := closeBlocked(w.Ops, m.End)
	ws := Windows(ops, m.Fault, m.End)
	r.Windows = len(ws)
	if len(ws) > 0 {
		r.WindowS, r.WindowOpen = secs(ws[0].Len()), ws[0].Open
		for _, x := range ws {
			r.MaxWindowS = math.Max(r.MaxWindowS, secs(x.Len()))
		}
	}
	var during []time.Duration
	byPhase := map[string][]Op{}
	misses := 0
	for _, o := range ops {
		if o.Start < m.Warm {
			continue
		}
		if o.Outcome == OK && o.Kind == "miss" && o.Start >= m.Fault {
			misses++
		}
		p := m.PhaseOf(o.Start)
		byPhase[p] = append(byPhase[p], o)
		// An operation the end of the run cut short is no error.
		cut := o.Outcome == Blocked && o.Latency() <= StallThreshold
		if o.Outcome != OK && !cut {
			r.Errors++
			r.ByKind[o.Kind]++
		}
		if p == PhaseFault || p == PhaseRecovery {
			during = append(during, o.Latency())
		}
	}
	r.P99Ms, r.MaxMs = ms(Percentile(during, 0.99)), ms(Percentile(during, 1))
	var base float64
	for _, p := range Phases {
		var lat []time.Duration
		st := PhaseStats{Phase: p}
		for _, o := range byPhase[p] {
			st.Ops++
			lat = append(lat, o.Latency())
			if o.Outcome == OK {
				st.OK++
			} else {
				st.Failed++
			}
		}
		st.P50Ms, st.P99Ms, st.MaxMs = ms(Percentile(lat, 0.5)), ms(Percentile(lat, 0.99)), ms(Percentile(lat, 1))
		if span := m.span(p); span > 0 {
			st.PerSecond = math.Round(float64(st.OK)/span.Seconds()*10) / 10
		}
		if p == PhaseBaseline {
			base = st.PerSecond
		}
		if base > 0 {
			st.VsBaseline = math.Round(st.PerSecond/base*100) / 100
		}
		r.Phases = append(r.Phases, st)
	}
	if len(r.ByKind) == 0 {
		r.ByKind = nil
	}
	if w.Name == "cache" {
		r.Misses = &misses
		cacheFigures(&r, w, ops, m)
	}
	if d := w.DB; d != nil {
		lost := len(d.Lost)
		bankOK := d.Verified && d.BankTotal == d.BankExpected && len(d.BadReads) == 0
		r.Acked, r.Lost, r.Unknown, r.UnknownCommitted, r.BankOK = &d.Acked, &lost, &d.Unknown, &d.UnknownCommitted, &bankOK
		r.Evidence = append(append(r.Evidence, d.Lost...), d.BadReads...)
		if d.Verified && d.BankTotal != d.BankExpected {
			r.Evidence = append(r.Evidence, Evidence{ID: "bank", At: m.End, What: fmt.Sprintf("total %d at verification, want %d", d.BankTotal, d.BankExpected)})
		}
		r.Verified = d.Verified
	}
	if q := w.MQ; q != nil {
		lost := len(q.Lost)
		r.Confirmed, r.Lost, r.Duplicates, r.Unknown = &q.Confirmed, &lost, &q.Duplicates, &q.Unknown
		r.Evidence = append(r.Evidence, q.Lost...)
		r.Verified = q.Verified
	}
	if w.DB == nil && w.MQ == nil {
		r.Verified = true
	}
	return r
}

// cacheFigures computes the cache workload's worst call, keys missed and
// the time its keys were served again after the heal.
func cacheFigures(r *WorkloadReport, w WorkloadRecord, ops []Op, m Marks) {
	var worst time.Duration
	missed := map[string]bool{}
	lastMiss := time.Duration(-1)
	for _, o := range ops {
		if o.Start < m.Fault || m.Fault == 0 {
			continue
		}
		worst = max(worst, o.Latency())
		if o.Outcome == OK && o.Kind == "miss" {
			if o.ID != "" {
				missed[o.ID] = true
			}
			if m.Heal > 0 && o.End >= m.Heal {
				lastMiss = max(lastMiss, o.End)
			}
		}
	}
	r.WorstCallMs = ms(worst)
	if w.Keys > 0 {
		keys, n := w.Keys, len(missed)
		r.Keys, r.KeysMissed = &keys, &n
		r.KeysMissedPct = math.Round(float64(n)/float64(keys)*1000) / 10
	}
	// Served again needs every key read once a pass: records that name
	// their keys (older ones read keys at random).
	if w.Keys > 0 && m.Heal > 0 && m.End > m.Heal {
		served := 0.0
		if lastMiss >= 0 {
			served = secs(lastMiss - m.Heal)
			r.ServedAgainOpen = m.End-lastMiss < time.Second
		}
		r.ServedAgainS = &served
	}
}

// LedgerCheck resolves the ledger: every acknowledged id must be present;
// an outcome-unknown id is resolved as committed or not, never counted as
// acknowledged or lost.
func LedgerCheck(ops []Op, present map[string]bool) (acked, unknown, unknownCommitted int, lost []Evidence) {
	for _, o := range ops {
		if o.ID == "" {
			continue
		}
		switch o.Outcome {
		case OK:
			acked++
			if !present[o.ID] {
				lost = append(lost, Evidence{ID: o.ID, At: o.End, What: "acknowledged insert missing at verification"})
			}
		case Unknown, Blocked:
			unknown++
			if present[o.ID] {
				unknownCommitted++
			}
		}
	}
	return
}

// MessageCheck compares confirmed publishes with deliveries (ids in the
// order received): every confirmed message must be delivered at least once;
// a message delivered more than once counts once per extra delivery.
func MessageCheck(ops []Op, delivered []string) (confirmed, unknown, duplicates int, lost []Evidence) {
	seen := map[string]int{}
	for _, id := range delivered {
		seen[id]++
		if seen[id] > 1 {
			duplicates++
		}
	}
	for _, o := range ops {
		if o.ID == "" {
			continue
		}
		switch o.Outcome {
		case OK:
			confirmed++
			if seen[o.ID] == 0 {
				lost = append(lost, Evidence{ID: o.ID, At: o.End, What: "confirmed message never delivered"})
			}
		case Unknown, Blocked:
			unknown++
		}
	}
	return
}
