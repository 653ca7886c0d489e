// Package status is the one combined view of the HA layer: every engine on
// every node, probed in parallel in the engines' own protocols (SQL status
// variables, the RabbitMQ management API, memcached stats, chronyc and NTP,
// HAProxy's stats), and judged healthy, degraded (serving, with less
// redundancy) or not serving.
package status

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/hastack/hastack/internal/engine/chrony"
	"github.com/hastack/hastack/internal/engine/endpoint"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/memcached"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// Verdicts, and the exit codes of 'hastack status'.
const (
	Healthy    = "healthy"     // exit 0
	Degraded   = "degraded"    // exit 1: serving, with less redundancy than the spec wants
	NotServing = "not serving" // exit 2
)

// Report is the whole view.
type Report struct {
	Healthy  bool     `json:"healthy"`
	Verdict  string   `json:"verdict"`
	Problems []string `json:"problems,omitempty"`
	// Notes are what an operator should know that does not change the
	// verdict: a recovery record left by an interrupted recovery.
	Notes    []string `json:"notes,omitempty"`
	Services Services `json:"services"`
	// Bus is the RabbitMQ cluster as one node's management API sees it:
	// queues, users, missing members.
	Bus rabbitmq.Status `json:"rabbitmqCluster"`
	// Writer is the node that takes database writes through the VIP now.
	Writer string `json:"writer,omitempty"`
	// ServiceDatabases is each OpenStack service's database user as the
	// cluster holds it (asked through the VIP); empty when not asked.
	ServiceDatabases []galera.ServiceDBState `json:"serviceDatabases,omitempty"`
	// ServiceDatabasesErr says why they could not be read.
	ServiceDatabasesErr string        `json:"serviceDatabasesError,omitempty"`
	Duration            time.Duration `json:"durationNs"`
}

// Services holds the per-node entries of every engine.
type Services struct {
	Galera    []GaleraEntry    `json:"galera"`
	RabbitMQ  []RabbitEntry    `json:"rabbitmq"`
	Memcached []MemcachedEntry `json:"memcached"`
	NTP       []NTPEntry       `json:"ntp"`
	Endpoint  []EndpointEntry  `json:"endpoint"`
}

// GaleraEntry is one controller's database.
type GaleraEntry struct {
	Node string `json:"node"`
	galera.Status
}

// RabbitEntry is one controller's broker as the cluster sees it.
type RabbitEntry struct {
	Node    string `json:"node"`
	Healthy bool   `json:"healthy"`
	Problem string `json:"problem,omitempty"`
	rabbitmq.NodeStatus
}

// MemcachedEntry is one controller's cache.
type MemcachedEntry struct {
	Node string `json:"node"`
	memcached.Stats
}

// NTPEntry is one node's time.
type NTPEntry struct {
	Node string `json:"node"`
	chrony.Status
}

// EndpointEntry is one controller's part of the database endpoint.
type EndpointEntry struct {
	Node    string `json:"node"`
	Healthy bool   `json:"healthy"`
	Problem string `json:"problem,omitempty"`
	// HoldsVIP: keepalived has put the VIP on this node.
	HoldsVIP bool `json:"holdsVIP"`
	// VIPUnknown says why the node could not be asked whether it holds
	// the VIP (its HAProxy is probed over TCP and may still answer).
	VIPUnknown string          `json:"vipUnknown,omitempty"`
	HAProxy    endpoint.Status `json:"haproxy"`
}

// Target is what status needs: the spec, a way to run commands on nodes
// (for chronyc and the VIP check) and the secrets of hastack's probe users.
type Target struct {
	Cluster *spec.Cluster
	Nodes   map[string]node.Node
	Secrets secrets.Values
	// ServiceUsers are the OpenStack services' database users to look
	// for (none: not looked for).
	ServiceUsers []galera.ServiceUser
	// SpecPath is the spec's file, beside which an interrupted recovery
	// leaves its record ("": only the controllers are looked at).
	SpecPath string
}

// Collect probes everything in parallel and judges the result.
func Collect(ctx context.Context, t Target) Report {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c := t.Cluster
	ctls := c.Controllers()
	var r Report
	r.Services.Galera = make([]GaleraEntry, len(ctls))
	r.Services.Memcached = make([]MemcachedEntry, len(ctls))
	r.Services.Endpoint = make([]EndpointEntry, len(ctls))
	r.Services.NTP = make([]NTPEntry, len(c.Spec.Nodes))
	var wg sync.WaitGroup
	var rabbit rabbitmq.Status
	amqpOK := make([]bool, len(ctls))
	brokerSvc := make([]*node.ServiceState, len(ctls))
	var writer string
	var writerErr error
	goDo := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	dbPass := t.Secrets.Get(secrets.DatabaseAdminPassword)
	for i, n := range ctls {
		goDo(func() {
			st, _ := galera.Probe(ctx, galera.ProbeOptions{Address: hostPort(n.Address, c.Spec.Database.Port), User: galera.AdminUser, Password: dbPass})
			r.Services.Galera[i] = GaleraEntry{Node: n.Name, Status: st}
		})
		goDo(func() {
			// Each probe has its own deadline, as the RabbitMQ one has: a
			// node cut off (no TCP reset) must not hold the whole view
			// until the overall deadline.
			pctx, cancel := context.WithTimeout(ctx, memcached.DefaultTimeout)
			defer cancel()
			st, _ := memcached.Probe(pctx, hostPort(n.Address, c.Spec.Memcached.Port))
			r.Services.Memcached[i] = MemcachedEntry{Node: n.Name, Stats: st}
		})
		goDo(func() {
			r.Services.Endpoint[i] = endpointEntry(ctx, t, n)
		})
		goDo(func() {
			amqpOK[i] = rabbitmq.AMQPAccepts(ctx, n.Address, c.Spec.RabbitMQ.Port)
		})
		goDo(func() {
			// Whether the broker's service runs on the node, to tell a
			// stopped broker from one that runs but has not joined.
			nd := t.Nodes[n.Name]
			if nd == nil {
				return
			}
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if st, err := nd.Services().Status(sctx, rabbitmq.ServiceName); err == nil {
				brokerSvc[i] = &st
			}
		})
	}
	for i, n := range c.Spec.Nodes {
		goDo(func() {
			st, _ := chrony.Probe(ctx, t.Nodes[n.Name], chrony.ProbeOptions{MaxOffset: c.Spec.Requirements.MaxClockOffset.Duration})
			r.Services.NTP[i] = NTPEntry{Node: n.Name, Status: st}
		})
	}
	goDo(func() {
		rabbit = probeRabbit(ctx, t)
	})
	goDo(func() {
		ctlNodes := map[string]node.Node{}
		for _, n := range ctls {
			if nd := t.Nodes[n.Name]; nd != nil {
				ctlNodes[n.Name] = nd
			}
		}
		r.Notes = galera.LeftoverRecords(ctx, t.SpecPath, ctlNodes)
	})
	goDo(func() {
		writer, writerErr = vipWriter(ctx, t, dbPass)
	})
	if len(t.ServiceUsers) > 0 {
		goDo(func() {
			var err error
			r.ServiceDatabases, err = serviceDatabases(ctx, t, dbPass)
			if err != nil {
				r.ServiceDatabasesErr = err.Error()
			}
		})
	}
	wg.Wait()
	for i, n := range ctls {
		r.Services.RabbitMQ = append(r.Services.RabbitMQ, rabbitEntry(n, rabbit, amqpOK[i], c.Spec.RabbitMQ.Port, brokerSvc[i]))
	}
	r.Bus = rabbit
	r.Writer = writer
	judge(&r, t, rabbit, writerErr)
	r.Duration = time.Since(start)
	return r
}

func hostPort(addr string, port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }

// probeRabbit asks the management API of every controller at once and
// takes one answer for the cluster (see speaker).
func probeRabbit(ctx context.Context, t Target) rabbitmq.Status {
	c := t.Cluster
	var expected []string
	for _, n := range c.Controllers() {
		expected = append(expected, rabbitmq.NodeName(n))
	}
	// Every controller is asked at once, each with its own deadline: one
	// frozen or cut-off node must not use up the time the others need.
	// The first controller in spec order that answers speaks for the
	// cluster.
	ctls := c.Controllers()
	sts := make([]rabbitmq.Status, len(ctls))
	errs := make([]error, len(ctls))
	var wg sync.WaitGroup
	for i, n := range ctls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			sts[i], errs[i] = rabbitmq.Probe(pctx, rabbitmq.ProbeOptions{
				URL:           rabbitmq.ManagementURL(n.Address, c.Spec.RabbitMQ.ManagementPort),
				User:          rabbitmq.AdminUser,
				Password:      t.Secrets.Get(secrets.RabbitAdminPassword),
				ExpectedNodes: expected,
			})
		}()
	}
	wg.Wait()
	return speaker(sts, errs)
}

// speaker picks the answer that speaks for the cluster: the first, in spec
// order, from a node that sees no partition itself. A node on the wrong
// side of a partition (one thawed after a freeze) reports its healthy peers
// as not running; the nodes that kept the cluster going see it as it is.
func speaker(sts []rabbitmq.Status, errs []error) rabbitmq.Status {
	first := -1
	for i := range sts {
		if errs[i] != nil {
			continue
		}
		if first < 0 {
			first = i
		}
		for _, ns := range sts[i].Nodes {
			if ns.Name == sts[i].AnsweredBy && ns.Running && len(ns.Partitions) == 0 {
				return sts[i]
			}
		}
	}
	if first >= 0 {
		return sts[first]
	}
	return sts[len(sts)-1]
}

// rabbitEntry is one controller's part of the cluster's answer, whether
// its client port accepts connections, and the state of the broker's
// service on the node (nil: the node could not be asked).
func rabbitEntry(n spec.Node, bus rabbitmq.Status, amqpOK bool, port int, svc *node.ServiceState) RabbitEntry {
	e := RabbitEntry{Node: n.Name}
	name := rabbitmq.NodeName(n)
	found := false
	for _, ns := range bus.Nodes {
		if ns.Name == name {
			e.NodeStatus, found = ns, true
		}
	}
	switch {
	case !found && bus.AnsweredBy == "":
		e.Problem = "unknown: no controller's management API answers"
	case !found:
		e.Problem = name + " is not a member of the cluster"
	case !e.Running:
		e.Problem = name + " is not running" + brokerService(svc)
	case len(e.Partitions) > 0:
		e.Problem = "partitioned from " + strings.Join(e.Partitions, ", ")
	case e.MemoryAlarm || e.DiskAlarm:
		e.Problem = "resource alarm raised: publishers are blocked"
	case !amqpOK:
		e.Problem = fmt.Sprintf("runs, but its client port %d does not accept connections: in maintenance mode (an interrupted 'hastack restart'; 'hastack up' takes it out), starting, or hung", port)
	}
	e.Healthy = e.Problem == ""
	return e
}

// notJoined is what a broker whose service runs outside the cluster may
// be doing, and what 'up' does about it.
const notJoined = ": paused after a partition (pause_minority), booting, or its boot hangs ('hastack up' resumes a paused broker, and restarts one whose boot hangs for 30 s while the other controllers run)"

// brokerService says why a broker the cluster does not see running is
// not: its service is stopped (how it ended), or it runs and has not
// joined.
func brokerService(svc *node.ServiceState) string {
	switch {
	case svc == nil:
		return ""
	case svc.Running && !svc.Started.IsZero():
		return fmt.Sprintf(" in the cluster, though its service runs (started %s ago)%s", time.Since(svc.Started).Round(time.Second), notJoined)
	case svc.Running:
		return " in the cluster, though its service runs" + notJoined
	case svc.Signal != "":
		return fmt.Sprintf(": its service is stopped (%s)", svc.Signal)
	case !svc.Exited.IsZero():
		return fmt.Sprintf(": its service is stopped (exit code %d)", svc.ExitCode)
	default:
		return ": its service is stopped"
	}
}

// endpointEntry asks one controller's HAProxy for its view and whether the
// node holds the VIP.
func endpointEntry(ctx context.Context, t Target, n spec.Node) EndpointEntry {
	c := t.Cluster
	e := EndpointEntry{Node: n.Name}
	pctx, cancel := context.WithTimeout(ctx, endpoint.DefaultTimeout)
	st, err := endpoint.Probe(pctx, hostPort(n.Address, c.Spec.Database.Endpoint.StatsPort))
	cancel()
	e.HAProxy = st
	if err != nil {
		e.Problem = err.Error()
	} else if !st.Healthy {
		e.Problem = st.Problem
	}
	if nd := t.Nodes[n.Name]; nd != nil {
		res, err := nd.Run(ctx, node.Cmd{Argv: []string{"ip", "-o", "-4", "addr", "show", "to", c.Spec.Database.Endpoint.VIP}})
		if err != nil {
			e.VIPUnknown = err.Error()
		}
		e.HoldsVIP = err == nil && strings.TrimSpace(string(res.Stdout)) != ""
	}
	e.Healthy = e.Problem == ""
	return e
}

// vipWriter connects through the VIP, as an OpenStack service would, and
// asks which node answered.
func vipWriter(ctx context.Context, t Target, password string) (string, error) {
	c := t.Cluster
	cfg := mysql.NewConfig()
	cfg.User = galera.AdminUser
	cfg.Passwd = password
	cfg.Net = "tcp"
	cfg.Addr = hostPort(c.Spec.Database.Endpoint.VIP, c.Spec.Database.Endpoint.Port)
	cfg.Timeout = 2 * time.Second
	cfg.ReadTimeout = 2 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return "", err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var host string
	if err := db.QueryRowContext(ctx, "SELECT @@hostname").Scan(&host); err != nil {
		return "", fmt.Errorf("the database endpoint %s does not answer: %w", cfg.Addr, err)
	}
	return host, nil
}

// serviceDatabases reads the services' databases and users through the
// VIP, as hastack's own user.
func serviceDatabases(ctx context.Context, t Target, password string) ([]galera.ServiceDBState, error) {
	e := t.Cluster.Spec.Database.Endpoint
	q, closeDB, err := galera.TCPQuery(galera.ProbeOptions{Address: hostPort(e.VIP, e.Port), User: galera.AdminUser, Password: password})
	if err != nil {
		return nil, err
	}
	defer closeDB()
	return galera.InspectServiceDBs(ctx, q, galera.AdminHost(t.Cluster), t.ServiceUsers, t.Secrets)
}

// vipProblems judges how many controllers hold the VIP. Two holders is
// always a problem (a split keepalived). None is one too, unless some
// controllers could not be asked and the VIP answers SQL: then a node that
// was not asked holds it, and the node that could not be asked is reported
// by its own probes.
func vipProblems(holders int, unasked []string, vipAnswers bool, vip string) []string {
	switch {
	case holders > 1:
		return []string{fmt.Sprintf("endpoint: %d controllers hold the VIP %s; exactly one must", holders, vip)}
	case holders == 0 && len(unasked) == 0:
		return []string{fmt.Sprintf("endpoint: no controller holds the VIP %s; exactly one must", vip)}
	case holders == 0 && !vipAnswers:
		return []string{fmt.Sprintf("endpoint: no controller that could be asked holds the VIP %s (not asked: %s)", vip, strings.Join(unasked, ", "))}
	}
	return nil
}

// judge sets each verdict. Serving: the endpoint answers SQL through the
// VIP, the broker has a running node that is not cut off, and memcached
// answers somewhere. Healthy: everything the spec deploys is up.
func judge(r *Report, t Target, rabbit rabbitmq.Status, writerErr error) {
	var problems []string
	serving := true
	synced := 0
	for _, g := range r.Services.Galera {
		if g.Healthy {
			synced++
		} else {
			problems = append(problems, fmt.Sprintf("galera %s: %s", g.Node, g.Problem))
		}
	}
	if writerErr != nil {
		serving = false
		problems = append(problems, "endpoint: "+writerErr.Error())
	}
	vipHolders := 0
	var unasked []string
	for _, e := range r.Services.Endpoint {
		if e.HoldsVIP {
			vipHolders++
		}
		if e.VIPUnknown != "" {
			unasked = append(unasked, e.Node)
		}
		if !e.Healthy {
			problems = append(problems, fmt.Sprintf("endpoint %s: %s", e.Node, e.Problem))
		}
	}
	problems = append(problems, vipProblems(vipHolders, unasked, writerErr == nil, t.Cluster.Spec.Database.Endpoint.VIP)...)
	rabbitUp := 0
	for _, e := range r.Services.RabbitMQ {
		if e.Healthy {
			rabbitUp++
		} else {
			problems = append(problems, fmt.Sprintf("rabbitmq %s: %s", e.Node, e.Problem))
		}
	}
	if rabbit.AnsweredBy != "" && !rabbit.Healthy && rabbit.Problem != "" {
		// Cluster-wide findings, e.g. a node whose metrics (partitions,
		// alarms) are not collected yet: unknown is not healthy.
		problems = append(problems, "rabbitmq: "+rabbit.Problem)
	}
	if rabbit.AnsweredBy == "" {
		first, _, _ := strings.Cut(rabbit.Problem, "\n")
		problems = append(problems, "rabbitmq: "+first)
	}
	for _, w := range rabbit.Warnings {
		problems = append(problems, "rabbitmq: "+w)
	}
	if rabbitUp == 0 {
		serving = false
	}
	mcUp := 0
	for _, m := range r.Services.Memcached {
		if m.Healthy {
			mcUp++
		} else {
			problems = append(problems, fmt.Sprintf("memcached %s: %s", m.Node, m.Problem))
		}
	}
	if mcUp == 0 {
		serving = false
	}
	for _, n := range r.Services.NTP {
		if !n.Healthy {
			problems = append(problems, fmt.Sprintf("ntp %s: %s", n.Node, n.Problem))
		}
	}
	if synced == 0 {
		serving = false
	}
	for _, d := range r.ServiceDatabases {
		if m := d.Missing(); m != "" {
			problems = append(problems, fmt.Sprintf("database user %s: %s (hastack up makes it so)", d.User, m))
		}
	}
	if r.ServiceDatabasesErr != "" && writerErr == nil {
		problems = append(problems, "service databases: cannot read them: "+r.ServiceDatabasesErr)
	}
	// A node that could not be asked about the VIP is a problem in its
	// own right, unless another probe of that node already says why.
	for _, e := range r.Services.Endpoint {
		if e.VIPUnknown == "" || slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, " "+e.Node+": ") }) {
			continue
		}
		problems = append(problems, fmt.Sprintf("endpoint %s: cannot tell whether it holds the VIP: %s", e.Node, e.VIPUnknown))
	}
	sort.Strings(problems)
	r.Problems = problems
	switch {
	case !serving:
		r.Verdict = NotServing
	case len(problems) > 0:
		r.Verdict = Degraded
	default:
		r.Verdict = Healthy
	}
	r.Healthy = r.Verdict == Healthy
}

// ExitCode maps a verdict to 'hastack status”s exit code.
func (r Report) ExitCode() int {
	switch r.Verdict {
	case Healthy:
		return 0
	case Degraded:
		return 1
	default:
		return 2
	}
}

// Err is nil when healthy, else says what is wrong.
func (r Report) Err() error {
	if r.Healthy {
		return nil
	}
	return errors.New(r.Verdict + ":\n  " + strings.Join(r.Problems, "\n  "))
}
