package check

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/engine/chrony"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/spec"
)

// Time is checked two ways, as the document asks: offsets measured across
// nodes, and the hierarchy.
//
// Offsets: every node's clock against every controller's. Where the node's
// chronyd runs, it has measured exactly that by NTP (a compute node's
// sources are the controllers; a controller's include the other
// controllers), and 'chronyc sources' reports each source's last offset
// and its error. Where it does not (before deploy, or chronyd stopped),
// both clocks are read through the transport from this machine, and the
// difference of the two readings is the offset; see clockSample.
//
// Hierarchy: controllers follow the upstream servers, every other node
// follows the controllers, and every node is synchronised.

// clockSample is a node's clock read through the transport: Offset is the
// node's clock minus this machine's at the middle of the round trip. The
// node read its clock somewhere inside the round trip, so the true offset
// lies within Offset ± Bound, half the round trip: a hard bound from
// causality, not a statistical one.
type clockSample struct {
	Offset time.Duration
	Bound  time.Duration
}

// sampleClock reads the node's clock ClockSamples times and keeps the
// reading with the shortest round trip (the tightest bound), as NTP's
// clock filter does.
func (g *gatherer) sampleClock(ctx context.Context, nd node.Node) (clockSample, error) {
	ctx, cancel := context.WithTimeout(ctx, g.o.Timeout)
	defer cancel()
	best := clockSample{Bound: -1}
	var last error
	for range g.o.ClockSamples {
		t0 := g.o.Now()
		res, err := nd.Run(ctx, node.Cmd{Argv: []string{"date", "+%s.%N"}})
		t1 := g.o.Now()
		if err != nil {
			last = err
			continue
		}
		at, err := parseEpoch(string(res.Stdout))
		if err != nil {
			last = err
			continue
		}
		s := sampleFrom(t0, t1, at)
		if best.Bound < 0 || s.Bound < best.Bound {
			best = s
		}
	}
	if best.Bound < 0 {
		return clockSample{}, last
	}
	return best, nil
}

// sampleFrom is the offset of a clock read as at, somewhere between t0 and
// t1 of this machine's clock.
func sampleFrom(t0, t1, at time.Time) clockSample {
	rtt := t1.Sub(t0)
	mid := t0.Add(rtt / 2)
	// Round strips the monotonic reading: the offset is between wall
	// clocks, which is what the node's clock is.
	return clockSample{Offset: at.Sub(mid.Round(0)), Bound: (rtt + 1) / 2}
}

// parseEpoch reads date +%s.%N exactly (a float64 would lose nanoseconds).
func parseEpoch(out string) (time.Time, error) {
	s := strings.TrimSpace(out)
	sec, frac, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if !ok || err != nil || len(frac) != 9 {
		return time.Time{}, fmt.Errorf("date printed %q, want seconds.nanoseconds", truncate(s, 60))
	}
	ns, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("date printed %q", truncate(s, 60))
	}
	return time.Unix(n, ns), nil
}

// offsetTo is one node's clock against one controller's.
type offsetTo struct {
	Controller string
	Offset     time.Duration // positive: the node's clock is ahead
	Bound      time.Duration // the measurement's error
	How        string        // "ntp" or "read from this machine"
	Err        string        // set when there is no measurement
}

// offsets measures nf's clock against every controller but itself.
func offsets(f *facts, nf *nodeFacts) []offsetTo {
	var out []offsetTo
	for _, ctl := range f.controllers {
		if ctl.Name == nf.Spec.Name {
			continue
		}
		o := offsetTo{Controller: ctl.Name}
		if src, ok := ntpSample(nf, ctl.Address); ok {
			// chrony's sign: positive when the local clock is ahead of
			// the source.
			o.Offset, o.Bound, o.How = src.Offset, src.Error, "ntp"
		} else if a, b := nf.Clock, f.nodes[ctl.Name].Clock; a.Done && b.Done && a.Err == nil && b.Err == nil {
			o.Offset, o.Bound, o.How = a.V.Offset-b.V.Offset, a.V.Bound+b.V.Bound, "read from this machine"
		} else {
			switch {
			case !a.Done || a.Err != nil:
				o.Err = "this node's clock not read"
			default:
				o.Err = ctl.Name + "'s clock not read"
			}
		}
		out = append(out, o)
	}
	return out
}

// ntpSample is the node's chronyd's last sample of the source at address,
// if it has a usable one.
func ntpSample(nf *nodeFacts, address string) (chrony.Source, bool) {
	if !nf.Chrony.Done || nf.Chrony.Err != nil {
		return chrony.Source{}, false
	}
	for _, s := range nf.Chrony.V.Sources {
		if s.Address == address && s.Reach != 0 && s.LastRx >= 0 {
			return s, true
		}
	}
	return chrony.Source{}, false
}

// judgeClockOffset: the worst offset against any controller, held to
// spec.requirements.maxClockOffset. Every measurement comes with its error,
// and the verdict respects it: an offset over the limit by more than its
// error fails; one that could be over the limit within its error warns (a
// reply delayed by a frozen peer reads as a large offset with an error as
// large: that is "cannot tell", not "off by that much").
func judgeClockOffset(c *spec.Cluster, f *facts, nf *nodeFacts) Result {
	limit := c.Spec.Requirements.MaxClockOffset.Duration
	r := Result{Node: nf.Spec.Name, Check: "clock offset", Limit: fmt.Sprintf("<= %s against every controller", limit)}
	if nf.ServicesErr != nil {
		r.Status, r.Value = Fail, "not measured: "+unreachable(nf)
		return r
	}
	offs := offsets(f, nf)
	if len(offs) == 0 {
		r.Status, r.Value = OK, "the only controller: the others are measured against it"
		return r
	}
	r.Status, r.Value = judgeOffsets(offs, limit)
	var d []string
	for _, o := range offs {
		if o.Err != "" {
			d = append(d, o.Controller+": "+o.Err)
		} else {
			d = append(d, fmt.Sprintf("%s %s ±%s (%s)", o.Controller, fmtSigned(o.Offset), fmtMS(o.Bound), o.How))
		}
	}
	r.Detail = strings.Join(d, "; ")
	return r
}

// judgeOffsets gives the verdict and the value for a node's offsets.
func judgeOffsets(offs []offsetTo, limit time.Duration) (Status, string) {
	var worstO *offsetTo
	missing := 0
	for i := range offs {
		if offs[i].Err != "" {
			missing++
			continue
		}
		if worstO == nil || abs(offs[i].Offset) > abs(worstO.Offset) {
			worstO = &offs[i]
		}
	}
	if worstO == nil {
		return Warn, fmt.Sprintf("not measured: %s", offs[0].Err)
	}
	v := fmt.Sprintf("%s ±%s against %s (worst of %d, %s)", fmtSigned(worstO.Offset), fmtMS(worstO.Bound), worstO.Controller, len(offs)-missing, worstO.How)
	st := OK
	for _, o := range offs {
		if o.Err != "" {
			continue
		}
		switch {
		case abs(o.Offset)-o.Bound > limit:
			st = Fail
		case abs(o.Offset)+o.Bound > limit:
			st = worst(st, Warn)
		}
	}
	if missing > 0 {
		st = worst(st, Warn)
		v += fmt.Sprintf("; %d controller(s) not measured", missing)
	}
	return st, v
}

// judgeNTP checks the hierarchy and synchronisation by each node's own
// chronyd. Before deploy there is no chronyd to ask: that is a warning
// with the reason, not a failure (the offsets above are still measured).
func judgeNTP(c *spec.Cluster, f *facts, nf *nodeFacts) Result {
	n := nf.Spec
	var ctlAddrs []string
	for _, ctl := range f.controllers {
		if ctl.Name != n.Name {
			ctlAddrs = append(ctlAddrs, ctl.Address)
		}
	}
	r := Result{Node: n.Name, Check: "ntp"}
	if n.IsController() {
		r.Limit = "synchronised to an upstream server (" + strings.Join(c.Spec.NTP.Upstream, ", ") + ")"
	} else {
		r.Limit = "synchronised to a controller, following only controllers"
	}
	switch {
	case nf.ServicesErr != nil:
		r.Status, r.Value = Fail, "not measured: "+unreachable(nf)
		return r
	case !nf.deployed(svcChrony):
		r.Status, r.Value = Warn, "chrony not deployed yet: hierarchy and synchronisation are checked after 'hastack up'"
		return r
	case !nf.running(svcChrony):
		r.Status, r.Value = Fail, "chronyd is deployed but not running: this clock follows nothing"
		return r
	case nf.Chrony.Err != nil:
		r.Status, r.Value = Fail, "chronyd does not answer: "+errText(nf.Chrony.Err)
		return r
	}
	st := nf.Chrony.V
	var srcs []string
	for _, s := range st.Sources {
		srcs = append(srcs, s.State+s.Address)
	}
	r.Detail = "sources: " + strings.Join(srcs, " ") + " (* selected, + combined, - not combined, ? unusable)"
	where := fmt.Sprintf("stratum %d", st.Stratum)
	if st.Reference != "" {
		where = st.Reference + ", " + where
	}
	if n.IsController() {
		r.Status, r.Value = judgeControllerNTP(st, c.Spec.NTP.Upstream, ctlAddrs, where)
	} else {
		r.Status, r.Value = judgeClientNTP(st, ctlAddrs, where)
	}
	return r
}

// judgeControllerNTP: a controller must be synchronised to an upstream
// server. Following another controller, or serving its own clock in
// orphan mode, is the designed fallback when every upstream server is
// lost: it warns, since time still agrees across nodes but no longer with
// the outside world.
func judgeControllerNTP(st chrony.Status, upstream, controllers []string, where string) (Status, string) {
	var missing []string
	for _, u := range upstream {
		if !slices.ContainsFunc(st.Sources, func(s chrony.Source) bool { return s.Address == u }) {
			missing = append(missing, u)
		}
	}
	switch {
	case len(missing) > 0:
		return Fail, "not configured to follow upstream " + strings.Join(missing, ", ")
	case st.Synchronised && slices.Contains(upstream, st.Reference):
		return OK, "synchronised to upstream " + where
	case st.Synchronised && slices.Contains(controllers, st.Reference):
		return Warn, "synchronised to another controller (" + where + "): no upstream server is usable"
	case st.Synchronised:
		return Fail, "synchronised to " + where + ", which is neither upstream nor a controller"
	case st.Reference == "local clock":
		return Warn, "orphan mode: serving its own clock (" + where + "): no upstream server or controller is usable"
	default:
		return Fail, "not synchronised: " + st.Problem
	}
}

// judgeClientNTP: every other node must follow the controllers, and only
// them, and be synchronised to one.
func judgeClientNTP(st chrony.Status, controllers []string, where string) (Status, string) {
	var strangers, missing []string
	for _, s := range st.Sources {
		if !slices.Contains(controllers, s.Address) {
			strangers = append(strangers, s.Address)
		}
	}
	for _, a := range controllers {
		if !slices.ContainsFunc(st.Sources, func(s chrony.Source) bool { return s.Address == a }) {
			missing = append(missing, a)
		}
	}
	switch {
	case len(strangers) > 0:
		return Fail, "follows " + strings.Join(strangers, ", ") + ", not a controller"
	case len(missing) > 0:
		return Fail, "does not follow controller(s) " + strings.Join(missing, ", ")
	case st.Synchronised:
		return OK, "synchronised to controller " + where
	default:
		return Fail, "not synchronised: " + st.Problem
	}
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func fmtSigned(d time.Duration) string {
	if d >= 0 {
		return "+" + fmtMS(d)
	}
	return "-" + fmtMS(-d)
}
