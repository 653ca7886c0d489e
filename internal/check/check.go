// Package check is hastack's preflight and post-deploy verification. It
// measures every node against the spec's requirements and the source
// document's rules (hardware, virtualisation, controller-to-controller
// latency, time, names, ports, quorum, exposure) and gives each finding a
// verdict, ok, warn or fail, with the value it measured and the limit it
// held that value to.
//
// Everything on a node is measured through node.Node, so the same code runs
// on lab nodes and on real hosts. Work is split in two: gathering (gather.go)
// runs commands and reads files on every node in parallel and keeps what it
// saw, errors included; judging (the other files) turns those facts into
// results with pure functions, which is what the unit tests exercise.
package check

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// Status is the verdict of one result.
type Status string

// Verdicts. Only Fail makes 'hastack check' exit 1: Warn marks what an
// operator should look at but that does not break the layer (a VM without
// nested virtualisation, a check that cannot be made before deploy).
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

// ClusterNode is the node name of results about the cluster as a whole,
// from the spec or from an engine's cluster-wide view.
const ClusterNode = "cluster"

// Result is one check on one node.
type Result struct {
	Node   string `json:"node"`
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Value is what was measured, in words an operator can act on.
	Value string `json:"value"`
	// Limit is what Value was held to.
	Limit string `json:"limit"`
	// Detail adds the evidence behind a verdict (every pair, every source)
	// when Value alone does not carry it.
	Detail string `json:"detail,omitempty"`
}

// Target is what check measures: the spec, every spec node, and the
// secrets (to ask the RabbitMQ management API and to know the Erlang
// cookie's digest). Secrets are only read, never generated.
type Target struct {
	Cluster *spec.Cluster
	Nodes   map[string]node.Node
	Secrets secrets.Values
	// ServiceUsers are the OpenStack services' database users to look
	// for (none: not checked).
	ServiceUsers []galera.ServiceUser
	// SpecPath is the spec's file, beside which an interrupted recovery
	// leaves its record ("": only the controllers are looked at).
	SpecPath string
}

// Options tune the measurements. The zero value is what 'hastack check'
// uses.
type Options struct {
	// Timeout bounds each measurement (one command, one probe); default
	// 10 s. A node that does not answer within it gets a result saying so.
	Timeout time.Duration
	// LatencySamples and LatencyInterval shape the ping between every two
	// controllers; default 10 samples, 100 ms apart (about 1 s per pair,
	// every pair at once).
	LatencySamples  int
	LatencyInterval time.Duration
	// ClockSamples is how many times each node's clock is read through
	// the transport when no NTP measurement is available; the reading with
	// the shortest round trip is kept. Default 3.
	ClockSamples int
	// MaxConcurrent bounds the commands and file reads in flight over all
	// nodes at once; default 32.
	MaxConcurrent int
	// Now is this machine's clock; tests inject one.
	Now func() time.Time
	// TryLogin tries to log in to the MariaDB server at address (host:port)
	// as user with an empty password, and returns nil when it is let in.
	// Default: the MySQL protocol over TCP.
	TryLogin func(ctx context.Context, address, user string) error
	// ProbeRabbit asks a RabbitMQ management API; default rabbitmq.Probe.
	ProbeRabbit func(ctx context.Context, o rabbitmq.ProbeOptions) (rabbitmq.Status, error)
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.LatencySamples <= 0 {
		o.LatencySamples = 10
	}
	if o.LatencyInterval <= 0 {
		o.LatencyInterval = 100 * time.Millisecond
	}
	if o.ClockSamples <= 0 {
		o.ClockSamples = 3
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 32
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TryLogin == nil {
		o.TryLogin = tryLogin
	}
	if o.ProbeRabbit == nil {
		o.ProbeRabbit = rabbitmq.Probe
	}
	return o
}

// Report is every result, in node order (the cluster first, then the
// spec's nodes) and check order within a node.
type Report struct {
	Results  []Result      `json:"results"`
	Duration time.Duration `json:"durationNs"`
	// Calls counts the commands run, files read and supervisor queries made
	// on the nodes: the cost that grows with the cluster.
	Calls int64 `json:"calls"`
}

// Counts returns how many results have each verdict.
func (r Report) Counts() (ok, warn, fail int) {
	for _, x := range r.Results {
		switch x.Status {
		case OK:
			ok++
		case Warn:
			warn++
		default:
			fail++
		}
	}
	return ok, warn, fail
}

// Failed reports whether any check failed.
func (r Report) Failed() bool {
	_, _, fail := r.Counts()
	return fail > 0
}

// Summary is the one line under the table.
func (r Report) Summary() string {
	ok, warn, fail := r.Counts()
	return fmt.Sprintf("%d checks: %d ok, %d warn, %d fail in %s", len(r.Results), ok, warn, fail, r.Duration.Round(time.Millisecond))
}

// Run measures everything and judges it. It does not fail as a whole: a
// node that cannot be reached, or a measurement that errs, becomes a
// result that says so.
func Run(ctx context.Context, t Target, o Options) Report {
	start := time.Now()
	o = o.withDefaults()
	var calls atomic.Int64
	g := newGatherer(t, o, &calls)
	// The services' databases are read through the endpoint beside the
	// gathering, not after it (before a deploy the VIP does not answer
	// and that costs the connect timeout).
	dbs := make(chan []Result, 1)
	go func() { dbs <- judgeServiceDatabases(ctx, t, o) }()
	recs := make(chan Result, 1)
	go func() { recs <- judgeRecoveryRecords(ctx, t) }()
	f := g.gather(ctx)
	results := judge(t.Cluster, f, o)
	results = append(results, <-dbs...)
	results = append(results, <-recs)
	return Report{Results: results, Duration: time.Since(start), Calls: calls.Load()}
}

// judge turns the facts into results, in report order.
func judge(c *spec.Cluster, f *facts, o Options) []Result {
	var out []Result
	out = append(out, judgeQuorum(c, f)...)
	out = append(out, judgeGuest(f))
	for _, n := range c.Spec.Nodes {
		nf := f.nodes[n.Name]
		out = append(out, judgeHardware(c, nf)...)
		out = append(out, judgeVirtualisation(nf))
		out = append(out, judgeLatency(c, nf)...)
		out = append(out, judgeClockOffset(c, f, nf))
		out = append(out, judgeNTP(c, f, nf))
		out = append(out, judgeNames(c, nf))
		if n.IsController() {
			out = append(out, judgePorts(c, nf))
			out = append(out, judgeListeners(c, nf))
			out = append(out, judgeGaleraCluster(c, f, nf))
			out = append(out, judgeCookie(f, nf))
			out = append(out, judgeDatabasePassword(nf))
		}
	}
	return out
}

// judgeRecoveryRecords warns of a recovery record left by an interrupted
// recovery ('hastack recover galera' resumes it).
func judgeRecoveryRecords(ctx context.Context, t Target) Result {
	r := Result{Node: ClusterNode, Check: "recovery records", Limit: "none left by an interrupted recovery", Status: OK, Value: "none"}
	ctls := map[string]node.Node{}
	for _, n := range t.Cluster.Controllers() {
		if nd := t.Nodes[n.Name]; nd != nil {
			ctls[n.Name] = nd
		}
	}
	if left := galera.LeftoverRecords(ctx, t.SpecPath, ctls); len(left) > 0 {
		r.Status, r.Value, r.Detail = Warn, fmt.Sprintf("%d left by an interrupted Galera recovery", len(left)), strings.Join(left, "; ")
	}
	return r
}
