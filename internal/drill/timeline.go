// Package drill breaks a controller the way real ones fail and reports what
// the clients saw. A drill is three parts that meet only in its timeline: a
// fault (fault.go: acts on one node and always has its undo), workloads
// (clients on this host that record every operation with its start, end and
// outcome) and the report (report.go: pure functions from the timeline to
// outage windows, percentiles, throughput and loss). The timeline is plain
// data, so the text, JSON and HTML views are three renderings of one thing.
package drill

import (
	"sort"
	"sync"
	"time"
)

// Phases of a drill run, in order.
const (
	PhaseBaseline = "baseline"
	PhaseFault    = "fault"
	PhaseRecovery = "recovery" // from the heal to status healthy
	PhaseVerify   = "verify"   // from healthy to the end of the run
)

// Phases lists the phases in order.
var Phases = []string{PhaseBaseline, PhaseFault, PhaseRecovery, PhaseVerify}

// Outcomes of an operation.
const (
	OK      = "ok"      // acknowledged
	Failed  = "failed"  // refused or failed: it certainly did not take effect
	Unknown = "unknown" // the acknowledgement was lost: it may or may not have taken effect
	Blocked = "blocked" // still running when the run ended
)

// Op is one client operation as the client saw it. Times are offsets from
// the start of the run.
type Op struct {
	Start   time.Duration `json:"start"`
	End     time.Duration `json:"end"`
	Outcome string        `json:"outcome"`
	// Kind names the error ("timeout", "refused", "1047", "1213", ...);
	// empty for an acknowledged operation.
	Kind string `json:"kind,omitempty"`
	// ID is the operation's data (a ledger row or a message id), for loss
	// accounting; empty for operations that write nothing checked.
	ID string `json:"id,omitempty"`
	// Retries is how many times the client retried it (1213, 1047).
	Retries int `json:"retries,omitempty"`
	// Read marks an operation that writes nothing: it counts in latency,
	// throughput and errors, but does not close an outage window (reads
	// may go on while writes wait).
	Read bool `json:"read,omitempty"`
}

// Latency is how long the operation took.
func (o Op) Latency() time.Duration { return o.End - o.Start }

// Recorder collects one workload's operations; safe for concurrent use.
type Recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

// NewRecorder starts a recorder whose offsets count from start.
func NewRecorder(start time.Time) *Recorder { return &Recorder{start: start} }

// Begin returns the offset of now, to pass to Done.
func (r *Recorder) Begin() time.Duration { return time.Since(r.start) }

// Now is the offset of now.
func (r *Recorder) Now() time.Duration { return time.Since(r.start) }

// Done records an operation that began at start and ends now.
func (r *Recorder) Done(start time.Duration, outcome, kind, id string, retries int) Op {
	return r.add(Op{Start: start, End: time.Since(r.start), Outcome: outcome, Kind: kind, ID: id, Retries: retries})
}

func (r *Recorder) add(op Op) Op {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
	return op
}

// Ops returns the operations sorted by start.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	out := append([]Op(nil), r.ops...)
	r.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return out
}

// Marks are the moments of a run, as offsets from its start. A zero mark
// after the baseline means the run never got there.
type Marks struct {
	// Warm is when every workload was set up and running: the baseline
	// starts there; earlier operations count only for loss accounting.
	Warm    time.Duration `json:"warm"`
	Fault   time.Duration `json:"fault"`
	Heal    time.Duration `json:"heal"`
	Healthy time.Duration `json:"healthy"` // status healthy again after the heal
	End     time.Duration `json:"end"`
}

// PhaseOf says which phase an offset falls in.
func (m Marks) PhaseOf(t time.Duration) string {
	switch {
	case t < m.Fault:
		return PhaseBaseline
	case t < m.Heal:
		return PhaseFault
	case t < m.Healthy:
		return PhaseRecovery
	}
	return PhaseVerify
}

// span is the phase's duration.
func (m Marks) span(phase string) time.Duration {
	switch phase {
	case PhaseBaseline:
		return m.Fault - m.Warm
	case PhaseFault:
		return m.Heal - m.Fault
	case PhaseRecovery:
		return m.Healthy - m.Heal
	}
	return m.End - m.Healthy
}

// DBLoss is what the database workload's verification found.
type DBLoss struct {
	Acked            int `json:"acked"`
	Unknown          int `json:"unknown"`
	UnknownCommitted int `json:"unknownCommitted"`
	// Lost are acknowledged ledger rows missing at verification.
	Lost []Evidence `json:"lostRows,omitempty"`
	// BankTotal is the sum of balances at verification; BankExpected what
	// it must be. BadReads are reads of the total during the run that saw
	// money created or destroyed.
	BankTotal    int64      `json:"bankTotal"`
	BankExpected int64      `json:"bankExpected"`
	BadReads     []Evidence `json:"badReads,omitempty"`
	// Verified is false when verification could not read the data.
	Verified    bool   `json:"verified"`
	VerifyError string `json:"verifyError,omitempty"`
}

// MQLoss is what the message workload's verification found.
type MQLoss struct {
	Confirmed  int        `json:"confirmed"`
	Unknown    int        `json:"unknown"` // published, confirm never came
	Delivered  int        `json:"delivered"`
	Duplicates int        `json:"duplicates"`
	Lost       []Evidence `json:"lostMessages,omitempty"`
	Resubs     int        `json:"resubscribes"`
	Verified   bool       `json:"verified"`
}

// Evidence names one piece of lost or corrupted data: its id and when the
// client was told it was safe.
type Evidence struct {
	ID   string        `json:"id"`
	At   time.Duration `json:"at"`
	What string        `json:"what,omitempty"`
}

// WorkloadRecord is one workload's raw record of one run.
type WorkloadRecord struct {
	Name    string  `json:"name"`
	Ops     []Op    `json:"ops"`
	DB      *DBLoss `json:"db,omitempty"`
	MQ      *MQLoss `json:"mq,omitempty"`
	Skipped string  `json:"skipped,omitempty"` // why it did not run
	// Keys is how many keys the cache workload set before the baseline;
	// its misses carry the key as ID.
	Keys int `json:"keys,omitempty"`
}

// RunRecord is one run of one scenario: everything the report is computed
// from.
type RunRecord struct {
	Scenario  string    `json:"scenario"`
	Node      string    `json:"node"`
	Started   time.Time `json:"started"`
	Marks     Marks     `json:"marks"`
	Fault     []string  `json:"faultLog,omitempty"` // what the fault and the heal did
	UpActed   bool      `json:"upActed"`
	UpDid     []string  `json:"upDid,omitempty"`
	Recovered bool      `json:"recovered"` // status healthy within the bound
	// StatusDuring are status's problems while the fault held.
	StatusDuring []string `json:"statusDuring,omitempty"`
	// OnlyTarget: status during the fault must name the target, and only
	// it (clock-stop: nothing else degrades).
	OnlyTarget bool `json:"onlyTarget,omitempty"`
	// CacheServers is how many memcached servers the clients use;
	// CacheServersHit how many of them the fault reaches (the keys
	// missed target allows that share).
	CacheServers    int `json:"cacheServers,omitempty"`
	CacheServersHit int `json:"cacheServersHit,omitempty"`
	// Targets are what the run was held to (from the spec), so that
	// 'drill report' judges the timelines again by the same ones.
	Targets   *Targets         `json:"targets,omitempty"`
	Workloads []WorkloadRecord `json:"workloads"`
	Error     string           `json:"error,omitempty"`
}
