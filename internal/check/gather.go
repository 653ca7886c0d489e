package check

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/engine/chrony"
	"github.com/hastack/hastack/internal/engine/endpoint"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// Supervised service names of the engines, as the deploy phases name them.
const (
	svcChrony     = "chrony"
	svcMemcached  = "memcached"
	svcMariaDB    = galera.ServiceName
	svcRabbitMQ   = rabbitmq.ServiceName
	svcAgent      = endpoint.AgentService
	svcHAProxy    = endpoint.HAProxyService
	svcKeepalived = endpoint.KeepalivedService
)

// fact is one measurement: its value, or the error that kept it from being
// made. Done is false when the measurement does not apply (chronyd is not
// deployed, say), which judges report differently from a failure.
type fact[T any] struct {
	V    T
	Err  error
	Done bool
}

func measured[T any](v T, err error) fact[T] { return fact[T]{V: v, Err: err, Done: true} }

// nodeFacts is everything gathered on one node.
type nodeFacts struct {
	Spec spec.Node
	// Services are the supervisor's services by name: a service it knows
	// was deployed there, whether it runs now or not. ServicesErr set: the
	// node could not be asked, so whether engines are deployed is unknown.
	Services    map[string]node.ServiceState
	ServicesErr error

	CPUs      fact[int]
	CPU       fact[cpuInfo]
	MemTotal  fact[uint64] // bytes
	DMI       string       // "vendor product", when the firmware tables are readable
	Disks     fact[[]diskFree]
	Links     fact[[]link]
	Listeners fact[[]listener]
	Names     fact[map[string]resolution]
	Clock     fact[clockSample]
	Chrony    fact[chrony.Status]
	// Pings by peer controller name (controllers only).
	Pings map[string]fact[pingResult]
	// Cookie is the hex SHA-256 of the Erlang cookie file; never the
	// cookie. Done with an error matching fs.ErrNotExist: no file.
	Cookie fact[string]
	Galera fact[galeraFacts]
	// Logins by user name ("root", "" for anonymous): nil means the
	// server let that user in with an empty password.
	Logins fact[map[string]error]
}

// deployed reports whether hastack ever started the service on the node.
func (n *nodeFacts) deployed(svc string) bool {
	_, ok := n.Services[svc]
	return ok
}

// running reports whether the service runs on the node now.
func (n *nodeFacts) running(svc string) bool { return n.Services[svc].Running }

// facts is everything gathered on every node, and from this machine.
type facts struct {
	nodes map[string]*nodeFacts
	// controllers are the spec's, in spec order, listed once: judges
	// that run per node look them up.
	controllers []spec.Node
	// Rabbit is one controller's management API's view of the cluster;
	// not Done when RabbitMQ is deployed nowhere.
	Rabbit fact[rabbitmq.Status]
	// CookieDigest is the hex SHA-256 of the cookie in the secrets file;
	// empty when there is no secrets file to compare with.
	CookieDigest string
}

// gatherer runs the measurements. Every call to a node goes through a
// wrapper that counts it and holds it to MaxConcurrent in flight.
type gatherer struct {
	t     Target
	o     Options
	nodes map[string]node.Node
	sem   chan struct{}
	calls *atomic.Int64
	// Secrets read once, up front; a missing one reads as "".
	cookie      string
	rabbitAdmin string
}

func newGatherer(t Target, o Options, calls *atomic.Int64) *gatherer {
	g := &gatherer{t: t, o: o, nodes: map[string]node.Node{}, sem: make(chan struct{}, o.MaxConcurrent), calls: calls}
	for _, n := range t.Cluster.Spec.Nodes {
		nd := t.Nodes[n.Name]
		if nd == nil {
			// Every measurement of a node hastack has no connection to
			// fails, and says why, like any other.
			nd = deadNode{name: n.Name, address: n.Address}
		}
		g.nodes[n.Name] = limitedNode{Node: nd, g: g}
	}
	g.cookie = t.Secrets.Get(secrets.ErlangCookie)
	g.rabbitAdmin = t.Secrets.Get(secrets.RabbitAdminPassword)
	return g
}

// gather runs in stages. First every node says which engines it runs, and
// its chronyd, where one runs, what it has measured. Then, only if some
// node lacks an NTP measurement of some controller (before deploy, chronyd
// stopped or not answering, a source unreachable), every node's clock is
// read through the transport, alone, so that the round trips that bound
// those readings are not inflated by the other measurements. Then
// everything else at once.
func (g *gatherer) gather(ctx context.Context) *facts {
	c := g.t.Cluster
	f := &facts{nodes: map[string]*nodeFacts{}, controllers: c.Controllers()}
	for _, n := range c.Spec.Nodes {
		f.nodes[n.Name] = &nodeFacts{Spec: n, Services: map[string]node.ServiceState{}}
	}
	if g.cookie != "" {
		sum := sha256.Sum256([]byte(g.cookie))
		f.CookieDigest = hex.EncodeToString(sum[:])
	}

	g.eachNode(ctx, f, func(ctx context.Context, nd node.Node, nf *nodeFacts) {
		ctx, cancel := context.WithTimeout(ctx, g.o.Timeout)
		defer cancel()
		states, err := nd.Services().List(ctx)
		nf.ServicesErr = err
		for _, s := range states {
			nf.Services[s.Name] = s
		}
		if nf.running(svcChrony) {
			nf.Chrony = measured(chrony.Probe(ctx, nd, chrony.ProbeOptions{MaxOffset: c.Spec.Requirements.MaxClockOffset.Duration}))
		}
	})
	if needClockReadings(f) {
		g.eachNode(ctx, f, func(ctx context.Context, nd node.Node, nf *nodeFacts) {
			nf.Clock = measured(g.sampleClock(ctx, nd))
		})
	}

	var wg sync.WaitGroup
	async := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	for _, n := range c.Spec.Nodes {
		g.gatherNode(ctx, f, g.nodes[n.Name], f.nodes[n.Name], async)
	}
	async(func() { f.Rabbit = g.probeRabbit(ctx, f) })
	wg.Wait()
	return f
}

// needClockReadings reports whether some node has no NTP measurement of
// some controller other than itself.
func needClockReadings(f *facts) bool {
	for _, nf := range f.nodes {
		for _, ctl := range f.controllers {
			if ctl.Name == nf.Spec.Name {
				continue
			}
			if _, ok := ntpSample(nf, ctl.Address); !ok {
				return true
			}
		}
	}
	return false
}

// eachNode runs fn on every spec node in parallel and waits.
func (g *gatherer) eachNode(ctx context.Context, f *facts, fn func(ctx context.Context, nd node.Node, nf *nodeFacts)) {
	var wg sync.WaitGroup
	for _, n := range g.t.Cluster.Spec.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(ctx, g.nodes[n.Name], f.nodes[n.Name])
		}()
	}
	wg.Wait()
}

// gatherNode starts every measurement of one node; each runs under its
// own deadline and writes only its own field.
func (g *gatherer) gatherNode(ctx context.Context, f *facts, nd node.Node, nf *nodeFacts, async func(func())) {
	c := g.t.Cluster
	n := nf.Spec
	measure := func(fn func(ctx context.Context)) {
		async(func() {
			ctx, cancel := context.WithTimeout(ctx, g.o.Timeout)
			defer cancel()
			fn(ctx)
		})
	}
	measure(func(ctx context.Context) {
		out, err := g.sh(ctx, nd, "nproc")
		nf.CPUs = measured(parseNproc(out, err))
	})
	measure(func(ctx context.Context) {
		data, err := nd.ReadFile(ctx, "/proc/cpuinfo")
		nf.CPU = measured(parseCPUInfo(string(data), err))
	})
	measure(func(ctx context.Context) {
		data, err := nd.ReadFile(ctx, "/proc/meminfo")
		nf.MemTotal = measured(parseMemTotal(string(data), err))
	})
	measure(func(ctx context.Context) {
		// Absent on many VMs and in containers; the CPU flags decide.
		vendor, _ := nd.ReadFile(ctx, "/sys/class/dmi/id/sys_vendor")
		product, _ := nd.ReadFile(ctx, "/sys/class/dmi/id/product_name")
		nf.DMI = dmiString(string(vendor), string(product))
	})
	measure(func(ctx context.Context) {
		nf.Disks = measured(g.diskFree(ctx, nd, dataPaths(n)))
	})
	measure(func(ctx context.Context) {
		out, err := g.sh(ctx, nd, "ip", "-j", "addr", "show")
		if err != nil {
			nf.Links = measured[[]link](nil, err)
			return
		}
		nf.Links = measured(parseIPAddr(out))
	})
	measure(func(ctx context.Context) {
		// Listening TCP and UDP sockets with their processes, numeric.
		out, err := g.sh(ctx, nd, "ss", "-Htulnp")
		if err != nil {
			nf.Listeners = measured[[]listener](nil, err)
			return
		}
		nf.Listeners = measured(parseListeners(out), nil)
	})
	measure(func(ctx context.Context) {
		nf.Names = measured(g.resolve(ctx, nd, c.Spec.Nodes))
	})
	if !n.IsController() {
		return
	}
	nf.Pings = map[string]fact[pingResult]{}
	var mu sync.Mutex
	for _, peer := range f.controllers {
		if peer.Name == n.Name {
			continue
		}
		async(func() {
			// The ping's own deadline (-w) ends it; this one only guards
			// against a transport that hangs.
			ctx, cancel := context.WithTimeout(ctx, g.pingDeadline()+g.o.Timeout)
			defer cancel()
			r, err := g.ping(ctx, nd, peer.Address)
			mu.Lock()
			nf.Pings[peer.Name] = measured(r, err)
			mu.Unlock()
		})
	}
	measure(func(ctx context.Context) {
		data, err := nd.ReadFile(ctx, rabbitmq.CookiePath)
		if err != nil {
			nf.Cookie = measured("", err)
			return
		}
		sum := sha256.Sum256(data)
		nf.Cookie = measured(hex.EncodeToString(sum[:]), nil)
	})
	switch {
	case nf.running(svcMariaDB):
		measure(func(ctx context.Context) {
			out, err := galera.SQL(ctx, nd, galeraQuery)
			if err != nil {
				nf.Galera = measured(galeraFacts{}, err)
				return
			}
			nf.Galera = measured(parseGaleraQuery(out), nil)
		})
	case nf.deployed(svcMariaDB):
		// Stopped: its grastate.dat still says which cluster history the
		// node belongs to.
		measure(func(ctx context.Context) {
			data, err := nd.ReadFile(ctx, galera.DataDir+"/grastate.dat")
			if err != nil {
				nf.Galera = measured(galeraFacts{}, err)
				return
			}
			g, err := galera.ParseGraState(data)
			if err != nil {
				err = fmt.Errorf("%s/grastate.dat: %w", galera.DataDir, err)
			}
			nf.Galera = measured(galeraFacts{FromGrastate: true, UUID: g.UUID}, err)
		})
	}
	if nf.deployed(svcMariaDB) {
		measure(func(ctx context.Context) {
			addr := net.JoinHostPort(n.Address, strconv.Itoa(c.Spec.Database.Port))
			logins := map[string]error{}
			for _, user := range []string{"root", ""} {
				logins[user] = g.o.TryLogin(ctx, addr, user)
			}
			nf.Logins = measured(logins, nil)
		})
	}
}

// sh runs a command under the gatherer's limits and returns its output.
func (g *gatherer) sh(ctx context.Context, nd node.Node, argv ...string) (string, error) {
	res, err := nd.Run(ctx, node.Cmd{Argv: argv})
	return string(res.Stdout), err
}

// probeRabbit asks the first controller's management API that answers:
// users and membership are cluster-wide, one answer is the cluster's.
func (g *gatherer) probeRabbit(ctx context.Context, f *facts) fact[rabbitmq.Status] {
	c := g.t.Cluster
	deployed := false
	for _, n := range c.Controllers() {
		if f.nodes[n.Name].deployed(svcRabbitMQ) {
			deployed = true
		}
	}
	if !deployed {
		return fact[rabbitmq.Status]{}
	}
	if g.rabbitAdmin == "" {
		return measured(rabbitmq.Status{}, errors.New("no secrets file with hastack's RabbitMQ administrator password beside the spec"))
	}
	var expected []string
	for _, n := range c.Controllers() {
		expected = append(expected, rabbitmq.NodeName(n))
	}
	var last error
	for _, n := range c.Controllers() {
		ctx, cancel := context.WithTimeout(ctx, g.o.Timeout)
		st, err := g.o.ProbeRabbit(ctx, rabbitmq.ProbeOptions{
			URL:           rabbitmq.ManagementURL(n.Address, c.Spec.RabbitMQ.ManagementPort),
			User:          rabbitmq.AdminUser,
			Password:      g.rabbitAdmin,
			ExpectedNodes: expected,
		})
		cancel()
		if err == nil {
			return measured(st, nil)
		}
		last = err
	}
	return measured(rabbitmq.Status{}, last)
}

// limitedNode counts every call to the node, holds it to the gatherer's
// concurrency limit, and returns when the call's context ends even if the
// transport does not: a command stuck on a frozen engine (the mariadb
// client waiting on a stopped server's socket, say) can outlive the kill of
// the process the transport started, through a grandchild that keeps the
// output pipe open. The check reports that node's measurement as timed out
// and moves on; the stuck call finishes in the background.
type limitedNode struct {
	node.Node
	g *gatherer
}

func (l limitedNode) acquire(ctx context.Context) (func(), error) {
	l.g.calls.Add(1)
	select {
	case l.g.sem <- struct{}{}:
		return func() { <-l.g.sem }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// bounded runs fn under the concurrency limit and gives up waiting for it
// when ctx ends.
func bounded[T any](ctx context.Context, l limitedNode, fn func() (T, error)) (T, error) {
	var zero T
	release, err := l.acquire(ctx)
	if err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer release()
		v, err := fn()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, fmt.Errorf("%s: no answer: %w", l.Name(), context.Cause(ctx))
	}
}

func (l limitedNode) Run(ctx context.Context, c node.Cmd) (node.Result, error) {
	return bounded(ctx, l, func() (node.Result, error) { return l.Node.Run(ctx, c) })
}

func (l limitedNode) ReadFile(ctx context.Context, path string) ([]byte, error) {
	return bounded(ctx, l, func() ([]byte, error) { return l.Node.ReadFile(ctx, path) })
}

// WriteFile is refused: check only looks.
func (l limitedNode) WriteFile(context.Context, string, []byte, fs.FileMode, string) error {
	return errors.New("check does not write to nodes")
}

func (l limitedNode) Services() node.Supervisor {
	return limitedSupervisor{s: l.Node.Services(), l: l}
}

// limitedSupervisor lets check query services, never change them.
type limitedSupervisor struct {
	s node.Supervisor
	l limitedNode
}

func (s limitedSupervisor) Start(context.Context, node.Service) error {
	return errors.New("check does not start services")
}

func (s limitedSupervisor) Stop(context.Context, string, time.Duration) error {
	return errors.New("check does not stop services")
}

func (s limitedSupervisor) Signal(context.Context, string, syscall.Signal) error {
	return errors.New("check does not signal services")
}

func (s limitedSupervisor) Status(ctx context.Context, name string) (node.ServiceState, error) {
	return bounded(ctx, s.l, func() (node.ServiceState, error) { return s.s.Status(ctx, name) })
}

func (s limitedSupervisor) List(ctx context.Context) ([]node.ServiceState, error) {
	return bounded(ctx, s.l, func() ([]node.ServiceState, error) { return s.s.List(ctx) })
}

// deadNode stands for a spec node hastack has no connection to.
type deadNode struct{ name, address string }

func (d deadNode) err() error { return errors.New("no connection to node " + d.name) }

func (d deadNode) Name() string    { return d.name }
func (d deadNode) Address() string { return d.address }
func (d deadNode) Run(context.Context, node.Cmd) (node.Result, error) {
	return node.Result{}, d.err()
}
func (d deadNode) WriteFile(context.Context, string, []byte, fs.FileMode, string) error {
	return d.err()
}
func (d deadNode) ReadFile(context.Context, string) ([]byte, error) { return nil, d.err() }
func (d deadNode) Services() node.Supervisor                        { return deadSupervisor{d} }

type deadSupervisor struct{ d deadNode }

func (s deadSupervisor) Start(context.Context, node.Service) error { return s.d.err() }
func (s deadSupervisor) Stop(context.Context, string, time.Duration) error {
	return s.d.err()
}
func (s deadSupervisor) Signal(context.Context, string, syscall.Signal) error {
	return s.d.err()
}
func (s deadSupervisor) Status(context.Context, string) (node.ServiceState, error) {
	return node.ServiceState{}, s.d.err()
}
func (s deadSupervisor) List(context.Context) ([]node.ServiceState, error) {
	return nil, s.d.err()
}
