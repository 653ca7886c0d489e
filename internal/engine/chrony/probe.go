package chrony

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// Time on a node is judged by the node's own chronyd, through chronyc over
// its local command socket: whether it is synchronised, to what, and how
// far off (Probe). 'hastack check' compares the nodes' clocks with each
// other (package check).

// LocalReferenceID is the reference ID chronyd reports when it serves its
// own clock ('local stratum N'), with no source to follow.
const LocalReferenceID = "7F7F0101"

// LeapNotSynchronised is the leap status of a chronyd that has never been,
// or is no longer, synchronised to anything.
const LeapNotSynchronised = "Not synchronised"

// DefaultTimeout bounds a probe whose context has no deadline.
const DefaultTimeout = 5 * time.Second

// Tracking is one 'chronyc -c tracking' report: how chronyd steers (or,
// under 'chronyd -x', would steer) the system clock.
//
// Offsets follow chrony's sign: positive means the local clock is ahead of
// (fast against) true time.
type Tracking struct {
	ReferenceID   string    `json:"referenceID"`   // hex; LocalReferenceID when on its own clock
	ReferenceName string    `json:"referenceName"` // the source's address; empty for the local clock
	Stratum       int       `json:"stratum"`
	RefTime       time.Time `json:"refTime"` // when the last measurement of the reference was processed
	// SystemOffset is how far the system clock is ahead of chronyd's NTP
	// time now; chronyd slews it away (chronyc calls it "System time").
	SystemOffset time.Duration `json:"systemOffsetNs"`
	// LastOffset is the estimated offset at the last clock update.
	LastOffset     time.Duration `json:"lastOffsetNs"`
	RMSOffset      time.Duration `json:"rmsOffsetNs"`
	FrequencyPPM   float64       `json:"frequencyPPM"`
	ResidualPPM    float64       `json:"residualFrequencyPPM"`
	SkewPPM        float64       `json:"skewPPM"`
	RootDelay      time.Duration `json:"rootDelayNs"`
	RootDispersion time.Duration `json:"rootDispersionNs"`
	UpdateInterval time.Duration `json:"updateIntervalNs"`
	LeapStatus     string        `json:"leapStatus"` // Normal, Insert second, Delete second, Not synchronised
}

// Source is one line of 'chronyc -c sources'.
type Source struct {
	// Mode is "^" for a server, "=" for a peer, "#" for a reference clock.
	Mode string `json:"mode"`
	// State is the selection state: "*" the selected source, "+" combined
	// with it, "-" selectable but not combined, "?" unusable (unreachable,
	// too few samples), "x" a falseticker, "~" too variable.
	State   string `json:"state"`
	Address string `json:"address"`
	Stratum int    `json:"stratum"`
	// PollLog2 is the polling interval as a power of 2 seconds.
	PollLog2 int `json:"pollLog2"`
	// Reach is the reachability register: one bit per recent poll, set
	// when it was answered (chronyc shows it in octal: 377 = last 8).
	Reach uint8 `json:"reach"`
	// LastRx is the age of the last good sample; negative when there has
	// been none.
	LastRx time.Duration `json:"lastRxNs"`
	// Offset is the last sample, adjusted for slews since; positive: the
	// local clock is ahead of the source. MeasuredOffset is the sample as
	// measured, and Error its margin.
	Offset         time.Duration `json:"offsetNs"`
	MeasuredOffset time.Duration `json:"measuredOffsetNs"`
	Error          time.Duration `json:"errorNs"`
}

// Selected reports whether chronyd synchronises to this source.
func (s Source) Selected() bool { return s.State == "*" }

// ParseTracking parses the output of 'chronyc -c tracking' (chrony 4.x): one
// line of 14 comma-separated fields.
func ParseTracking(out string) (Tracking, error) {
	line := strings.TrimSpace(out)
	f := strings.Split(line, ",")
	if len(f) != 14 {
		return Tracking{}, fmt.Errorf("chronyc tracking: %d fields, want 14: %q", len(f), truncate(line, 200))
	}
	p := fieldParser{what: "chronyc tracking"}
	t := Tracking{
		ReferenceID:   f[0],
		ReferenceName: f[1],
		Stratum:       p.int(f[2], "stratum"),
		RefTime:       p.epoch(f[3], "ref time"),
		// chronyc prints the correction to apply: positive when the clock
		// is slow. Negated, it reads as the other offsets do.
		SystemOffset:   -p.seconds(f[4], "system time"),
		LastOffset:     p.seconds(f[5], "last offset"),
		RMSOffset:      p.seconds(f[6], "RMS offset"),
		FrequencyPPM:   p.float(f[7], "frequency"),
		ResidualPPM:    p.float(f[8], "residual frequency"),
		SkewPPM:        p.float(f[9], "skew"),
		RootDelay:      p.seconds(f[10], "root delay"),
		RootDispersion: p.seconds(f[11], "root dispersion"),
		UpdateInterval: p.seconds(f[12], "update interval"),
		LeapStatus:     f[13],
	}
	if p.err != nil {
		return Tracking{}, p.err
	}
	return t, nil
}

// ParseSources parses the output of 'chronyc -c sources' (chrony 4.x): one
// line of 10 comma-separated fields per source; no sources, no lines.
func ParseSources(out string) ([]Source, error) {
	var srcs []Source
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) != 10 {
			return nil, fmt.Errorf("chronyc sources: %d fields, want 10: %q", len(f), truncate(line, 200))
		}
		p := fieldParser{what: "chronyc sources"}
		s := Source{
			Mode:           f[0],
			State:          f[1],
			Address:        f[2],
			Stratum:        p.int(f[3], "stratum"),
			PollLog2:       p.int(f[4], "poll"),
			Reach:          p.octal(f[5], "reach"),
			LastRx:         p.lastRx(f[6]),
			Offset:         p.seconds(f[7], "offset"),
			MeasuredOffset: p.seconds(f[8], "measured offset"),
			Error:          p.seconds(f[9], "error"),
		}
		if p.err != nil {
			return nil, p.err
		}
		srcs = append(srcs, s)
	}
	return srcs, nil
}

// fieldParser converts fields and keeps the first error.
type fieldParser struct {
	what string
	err  error
}

func (p *fieldParser) fail(name, v string, err error) {
	if p.err == nil {
		p.err = fmt.Errorf("%s: %s %q: %w", p.what, name, v, err)
	}
}

func (p *fieldParser) int(v, name string) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		p.fail(name, v, err)
	}
	return n
}

func (p *fieldParser) float(v, name string) float64 {
	x, err := strconv.ParseFloat(v, 64)
	if err != nil {
		p.fail(name, v, err)
	}
	return x
}

func (p *fieldParser) seconds(v, name string) time.Duration {
	return time.Duration(math.Round(p.float(v, name) * float64(time.Second)))
}

// epoch parses "seconds.nanoseconds" since 1970 exactly (a float64 would
// lose the nanoseconds).
func (p *fieldParser) epoch(v, name string) time.Time {
	sec, frac, _ := strings.Cut(v, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		p.fail(name, v, err)
		return time.Time{}
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
			p.fail(name, v, err)
		}
	}
	if s == 0 && ns == 0 {
		return time.Time{} // never synchronised
	}
	return time.Unix(s, ns).UTC()
}

func (p *fieldParser) octal(v, name string) uint8 {
	n, err := strconv.ParseUint(v, 8, 8)
	if err != nil {
		p.fail(name, v, err)
	}
	return uint8(n)
}

// lastRx is in seconds; chronyc prints 2^32-1 (chronyc sources shows "-")
// for a source never heard from.
func (p *fieldParser) lastRx(v string) time.Duration {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		p.fail("last rx", v, err)
		return 0
	}
	if n == math.MaxUint32 {
		return -1
	}
	return time.Duration(n) * time.Second
}

// ProbeOptions tunes Probe.
type ProbeOptions struct {
	// Socket is chronyd's command socket (chronyc -h). Empty: chronyc's
	// default, /run/chrony/chronyd.sock, which the rendered configuration
	// keeps as the only command channel (cmdport 0).
	Socket string
	// MaxOffset, when set, makes a node whose system clock is further than
	// this from its NTP time unhealthy (spec.requirements.maxClockOffset).
	MaxOffset time.Duration
}

// Status is what a node's chronyd says of its time.
type Status struct {
	// Healthy: synchronised, and within MaxOffset when one was given.
	Healthy bool   `json:"healthy"`
	Problem string `json:"problem,omitempty"`
	Node    string `json:"node"`
	// Synchronised: the leap status is not "Not synchronised" and chronyd
	// steers by a source: one selected ('*'), or the reference it keeps
	// while it reselects. A controller serving its own clock (local or
	// orphan mode) is not: it still serves time, but follows nothing.
	Synchronised bool   `json:"synchronised"`
	Stratum      int    `json:"stratum"`
	Reference    string `json:"reference"` // the selected source's address, "local clock", or ""
	// SystemOffset and LastOffset: positive when the clock is ahead; see
	// Tracking.
	SystemOffset time.Duration `json:"systemOffsetNs"`
	LastOffset   time.Duration `json:"lastOffsetNs"`
	LeapStatus   string        `json:"leapStatus"`
	Sources      []Source      `json:"sources"`
}

// Probe asks the node's chronyd, through chronyc over the local command
// socket, for its tracking and sources. chronyc is a small C client, not a
// daemon, so running it is cheap.
//
// The returned Status carries a Problem whenever it is not healthy. The
// error is non-nil when chronyd could not be asked (not running, chronyc
// missing, unparsable answer).
func Probe(ctx context.Context, n node.Node, o ProbeOptions) (Status, error) {
	st := Status{Node: n.Name()}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	fail := func(err error) (Status, error) {
		err = fmt.Errorf("chrony probe %s: %w", n.Name(), err)
		st.Problem = err.Error()
		return st, err
	}
	tr, err := chronyc(ctx, n, o.Socket, "tracking")
	if err != nil {
		return fail(err)
	}
	tracking, err := ParseTracking(tr)
	if err != nil {
		return fail(err)
	}
	so, err := chronyc(ctx, n, o.Socket, "sources")
	if err != nil {
		return fail(err)
	}
	sources, err := ParseSources(so)
	if err != nil {
		return fail(err)
	}
	st = judge(n.Name(), tracking, sources, o.MaxOffset)
	return st, nil
}

func chronyc(ctx context.Context, n node.Node, socket, command string) (string, error) {
	// -c: CSV, which also turns reverse DNS off: a probe must not wait on
	// a resolver.
	argv := []string{"chronyc", "-c"}
	if socket != "" {
		argv = append(argv, "-h", socket)
	}
	argv = append(argv, command)
	res, err := n.Run(ctx, node.Cmd{Argv: argv})
	if err != nil {
		return "", err
	}
	return string(res.Stdout), nil
}

// judge turns tracking and sources into a verdict.
func judge(nodeName string, t Tracking, srcs []Source, maxOffset time.Duration) Status {
	st := Status{
		Node:         nodeName,
		Stratum:      t.Stratum,
		SystemOffset: t.SystemOffset,
		LastOffset:   t.LastOffset,
		LeapStatus:   t.LeapStatus,
		Sources:      srcs,
	}
	var selected *Source
	reachable := 0
	for i := range srcs {
		if srcs[i].Selected() {
			selected = &srcs[i]
		}
		if srcs[i].Reach != 0 {
			reachable++
		}
	}
	// chronyd's own verdict is its tracking: the leap status and the
	// reference it steers by (what 'chronyc waitsync' waits for). The '*'
	// mark is not: when chronyd reselects (its source turned falseticker
	// for a sample, or another one scored better), it keeps steering by
	// the last reference and marks every source '-' until the new best one
	// brings a fresh sample, up to that source's poll interval (64 s for
	// an upstream server). On one machine's lab, where every clock is the
	// same clock and the margins are microseconds, that happens often.
	followsSource := t.ReferenceName != "" && t.ReferenceID != LocalReferenceID && t.ReferenceID != "00000000"
	switch {
	case selected != nil:
		st.Reference = selected.Address
	case t.ReferenceID == LocalReferenceID:
		st.Reference = "local clock"
	case followsSource:
		st.Reference = t.ReferenceName
	}
	st.Synchronised = t.LeapStatus != LeapNotSynchronised && (selected != nil || followsSource)

	switch {
	case st.Synchronised && maxOffset > 0 && abs(t.SystemOffset) > maxOffset:
		st.Problem = fmt.Sprintf("system clock %v off NTP time, more than the %v allowed", t.SystemOffset, maxOffset)
	case st.Synchronised:
		st.Healthy = true
	case len(srcs) == 0 && t.ReferenceID == LocalReferenceID:
		st.Problem = fmt.Sprintf("no time source configured: serving its own clock at stratum %d", t.Stratum)
	case len(srcs) == 0:
		st.Problem = "no time source configured"
	case t.ReferenceID == LocalReferenceID:
		st.Problem = fmt.Sprintf("no source selected (%d of %d reachable; %s): serving its own clock at stratum %d (local/orphan mode)", reachable, len(srcs), sourceStates(srcs), t.Stratum)
	case reachable == 0:
		st.Problem = fmt.Sprintf("not synchronised: none of the %d sources answers", len(srcs))
	default:
		st.Problem = fmt.Sprintf("not synchronised: no source selected yet (%d of %d reachable; %s; leap status %s)", reachable, len(srcs), sourceStates(srcs), t.LeapStatus)
	}
	return st
}

// sourceStates says how chronyd judged each source, for a problem that
// must say why nothing was selected: "10.0.0.2 stratum 1 falseticker, ...".
func sourceStates(srcs []Source) string {
	words := map[string]string{"*": "selected", "+": "combined", "-": "not combined", "?": "unusable", "x": "falseticker", "~": "too variable"}
	parts := make([]string, len(srcs))
	for i, s := range srcs {
		w, ok := words[s.State]
		if !ok {
			w = "state " + s.State
		}
		parts[i] = fmt.Sprintf("%s stratum %d %s", s.Address, s.Stratum, w)
	}
	return strings.Join(parts, ", ")
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
