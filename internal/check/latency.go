package check

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/spec"
)

// The document's latency rule (at most 2 ms between any two controllers,
// measured with ping) is checked with ping, from inside every controller
// to every other one's management address: the full matrix, both
// directions, since a pair's paths may differ each way. Every pair runs at
// once, so the whole matrix takes as long as one pair's samples.

// pingResult is one ping run.
type pingResult struct {
	Address string
	Sent    int
	RTTs    []time.Duration // one per reply, in order
}

// pingDeadline is how long ping itself may run: every sample's interval
// plus a second for the last reply.
func (g *gatherer) pingDeadline() time.Duration {
	return time.Duration(g.o.LatencySamples)*g.o.LatencyInterval + time.Second
}

// ping runs ping on nd against address. ping exits 1 when replies are
// missing; its output still says how many, so that is not an error here.
func (g *gatherer) ping(ctx context.Context, nd node.Node, address string) (pingResult, error) {
	argv := []string{"ping", "-n",
		"-c", strconv.Itoa(g.o.LatencySamples),
		"-i", strconv.FormatFloat(g.o.LatencyInterval.Seconds(), 'f', 3, 64),
		"-W", "1",
		"-w", strconv.Itoa(int(math.Ceil(g.pingDeadline().Seconds()))),
		address}
	res, err := nd.Run(ctx, node.Cmd{Argv: argv})
	var ce *node.CommandError
	if errors.As(err, &ce) && ce.ExitCode == 127 {
		// A minimal Debian has no ping.
		return pingResult{Address: address}, fmt.Errorf("%s has no ping: install iputils-ping there ('hastack up' installs it on controllers)", nd.Name())
	}
	r, perr := parsePing(string(res.Stdout))
	r.Address = address
	if perr != nil {
		if err != nil {
			return r, err
		}
		return r, perr
	}
	return r, nil
}

var (
	pingReply = regexp.MustCompile(`icmp_seq=\d+ .*time[=<]([0-9.]+) ms`)
	pingSent  = regexp.MustCompile(`(\d+) packets transmitted`)
)

// parsePing reads iputils ping output: one "time=X ms" per reply (DUP!
// replies skipped: a duplicate is not a sample) and the transmitted count.
func parsePing(out string) (pingResult, error) {
	var r pingResult
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "DUP!") {
			continue
		}
		if m := pingReply.FindStringSubmatch(line); m != nil {
			ms, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				return r, fmt.Errorf("ping: %q", line)
			}
			r.RTTs = append(r.RTTs, time.Duration(ms*float64(time.Millisecond)))
		}
		if m := pingSent.FindStringSubmatch(line); m != nil {
			r.Sent, _ = strconv.Atoi(m[1])
		}
	}
	if r.Sent == 0 {
		return r, fmt.Errorf("ping printed no statistics: %q", truncate(strings.TrimSpace(out), 200))
	}
	return r, nil
}

// rttStats are the statistics a pair is judged by.
type rttStats struct {
	P50, Max time.Duration
}

// summarise returns the median (nearest rank: an observed sample, never an
// interpolation between two) and the maximum; zero for no samples.
func summarise(samples []time.Duration) rttStats {
	if len(samples) == 0 {
		return rttStats{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	return rttStats{P50: s[(len(s)+1)/2-1], Max: s[len(s)-1]}
}

// judgePair judges one direction of one pair against the limit. The
// median decides: a pair whose typical round trip is over the limit fails.
// A maximum over the limit with a median under it (the first packet's ARP
// resolution, a scheduling hiccup) or a lost reply warns.
func judgePair(r pingResult, limit time.Duration) (Status, string) {
	got := len(r.RTTs)
	if got == 0 {
		return Fail, fmt.Sprintf("no reply from %s (%d sent)", r.Address, r.Sent)
	}
	st := summarise(r.RTTs)
	v := fmt.Sprintf("p50 %s, max %s (%d/%d replies)", fmtMS(st.P50), fmtMS(st.Max), got, r.Sent)
	switch {
	case st.P50 > limit:
		return Fail, v
	case st.Max > limit || got < r.Sent:
		return Warn, v
	default:
		return OK, v
	}
}

// judgeLatency gives one result per peer controller.
func judgeLatency(c *spec.Cluster, nf *nodeFacts) []Result {
	n := nf.Spec
	if !n.IsController() {
		return nil
	}
	limit := c.Spec.Requirements.MaxLatency.Duration
	var out []Result
	for _, peer := range c.Controllers() {
		if peer.Name == n.Name {
			continue
		}
		r := Result{Node: n.Name, Check: "latency " + peer.Name, Limit: fmt.Sprintf("round trip p50 <= %s", limit)}
		p, ok := nf.Pings[peer.Name]
		switch {
		case !ok:
			r.Status, r.Value = Fail, "not measured: "+unreachable(nf)
		case p.Err != nil && len(p.V.RTTs) == 0 && p.V.Sent == 0:
			r.Status, r.Value = Fail, "not measured: "+errText(p.Err)
		default:
			r.Status, r.Value = judgePair(p.V, limit)
		}
		out = append(out, r)
	}
	return out
}

// unreachable says why a node yielded no measurement at all.
func unreachable(nf *nodeFacts) string {
	if nf.ServicesErr != nil {
		return "node not reachable: " + errText(nf.ServicesErr)
	}
	return "no measurement"
}

// fmtMS prints a duration in milliseconds with microsecond resolution.
func fmtMS(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64) + " ms"
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
