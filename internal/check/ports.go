package check

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hastack/hastack/internal/spec"
)

// listener is one listening socket as ss(8) reports it.
type listener struct {
	Proto   string // tcp or udp
	Address string // "0.0.0.0", "::" or "*" for every address
	Port    int
	Process string // command name (at most 15 characters); "" when ss could not tell
}

func (l listener) String() string {
	who := l.Process
	if who == "" {
		who = "an unknown process"
	}
	return fmt.Sprintf("%s %s held by %s", l.Proto, net.JoinHostPort(l.Address, strconv.Itoa(l.Port)), who)
}

// parseListeners reads 'ss -Htulnp': netid, state, queues, local address,
// peer, process.
func parseListeners(out string) []listener {
	var ls []listener
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || (f[0] != "tcp" && f[0] != "udp") {
			continue
		}
		local := f[4]
		i := strings.LastIndex(local, ":")
		if i < 0 {
			continue
		}
		port, err := strconv.Atoi(local[i+1:])
		if err != nil {
			continue
		}
		host := local[:i]
		// A socket bound to a device shows as ADDR%DEV; the device does
		// not matter here.
		if j := strings.Index(host, "%"); j >= 0 {
			host = host[:j]
		}
		l := listener{Proto: f[0], Address: strings.Trim(host, "[]"), Port: port}
		if k := strings.Index(line, `(("`); k >= 0 {
			rest := line[k+3:]
			if j := strings.Index(rest, `"`); j >= 0 {
				l.Process = rest[:j]
			}
		}
		ls = append(ls, l)
	}
	return ls
}

func wildcard(addr string) bool { return addr == "0.0.0.0" || addr == "::" || addr == "*" }

func loopback(addr string) bool {
	a, err := netip.ParseAddr(addr)
	return err == nil && a.IsLoopback()
}

// portRule is one port an engine holds on a controller.
type portRule struct {
	Service string // the supervised service that deploys the engine
	Proto   string
	Port    int
	// Process lists the command names that may hold the port (prefixes:
	// hastack's agent runs from a content-addressed file, hastack-<hash>).
	Process []string
	// VIP: the port is held on the database endpoint's VIP, and only by
	// the controller that holds it now, so it may be free.
	VIP bool
	// Transient: held only while Galera transfers state (IST, SST); it
	// must be free before deploy and may be free after.
	Transient bool
}

// portRules are the ports of every engine on a controller.
func portRules(c *spec.Cluster) []portRule {
	d, r, e := c.Spec.Database, c.Spec.RabbitMQ, c.Spec.Database.Endpoint
	beam := []string{"beam.smp"}
	return []portRule{
		{Service: svcChrony, Proto: "udp", Port: spec.NTPPort, Process: []string{"chronyd"}},
		{Service: svcMemcached, Proto: "tcp", Port: c.Spec.Memcached.Port, Process: []string{"memcached"}},
		{Service: svcMariaDB, Proto: "tcp", Port: d.Port, Process: []string{"mariadbd"}},
		{Service: svcMariaDB, Proto: "tcp", Port: spec.GaleraReplicationPort, Process: []string{"mariadbd"}},
		{Service: svcMariaDB, Proto: "tcp", Port: spec.GaleraISTPort, Process: []string{"mariadbd"}, Transient: true},
		// mariabackup SST streams through socat on the joiner.
		{Service: svcMariaDB, Proto: "tcp", Port: spec.GaleraSSTPort, Process: []string{"socat", "mariabackup", "mariadbd"}, Transient: true},
		{Service: svcRabbitMQ, Proto: "tcp", Port: r.Port, Process: beam},
		{Service: svcRabbitMQ, Proto: "tcp", Port: r.ManagementPort, Process: beam},
		{Service: svcRabbitMQ, Proto: "tcp", Port: r.DistPort, Process: beam},
		// epmd, the Erlang port mapper, is started by the broker.
		{Service: svcRabbitMQ, Proto: "tcp", Port: 4369, Process: []string{"epmd"}},
		{Service: svcAgent, Proto: "tcp", Port: e.CheckPort, Process: []string{"hastack"}},
		{Service: svcHAProxy, Proto: "tcp", Port: e.StatsPort, Process: []string{"haproxy"}},
		{Service: svcHAProxy, Proto: "tcp", Port: e.PeersPort, Process: []string{"haproxy"}},
		{Service: svcHAProxy, Proto: "tcp", Port: e.Port, Process: []string{"haproxy"}, VIP: true},
	}
}

// matches reports whether a listener is on the rule's port where the rule
// looks: the VIP for the endpoint, else the node's management address or
// every address (a wildcard socket takes the port on every address).
func (p portRule) matches(l listener, mgmt, vip string) bool {
	if l.Proto != p.Proto || l.Port != p.Port {
		return false
	}
	if p.VIP {
		return l.Address == vip
	}
	return l.Address == mgmt || wildcard(l.Address)
}

func (p portRule) accepts(process string) bool {
	return slices.ContainsFunc(p.Process, func(name string) bool { return process != "" && strings.HasPrefix(process, name) })
}

func (p portRule) String() string { return fmt.Sprintf("%s %d (%s)", p.Proto, p.Port, p.Service) }

// judgePorts, on controllers (no engine listens elsewhere): before an
// engine is deployed its ports must be free (the engine would fail to
// bind, or clients would reach another program); once deployed, they must
// be held by that engine.
func judgePorts(c *spec.Cluster, nf *nodeFacts) Result {
	n := nf.Spec
	r := Result{Node: n.Name, Check: "ports", Limit: "free before deploy; held by their engine after"}
	switch {
	case nf.ServicesErr != nil:
		r.Status, r.Value = Fail, "not measured: "+unreachable(nf)
		return r
	case nf.Listeners.Err != nil:
		r.Status, r.Value = Fail, "not measured: "+errText(nf.Listeners.Err)
		return r
	}
	vip := c.Spec.Database.Endpoint.VIP
	var problems, held []string
	free := 0
	for _, p := range portRules(c) {
		var here []listener
		for _, l := range nf.Listeners.V {
			if p.matches(l, n.Address, vip) {
				here = append(here, l)
			}
		}
		if !nf.deployed(p.Service) {
			for _, l := range here {
				problems = append(problems, fmt.Sprintf("%s before %s is deployed", l, p.Service))
			}
			if len(here) == 0 {
				free++
			}
			continue
		}
		ok := false
		for _, l := range here {
			if p.accepts(l.Process) {
				ok = true
				continue
			}
			problems = append(problems, fmt.Sprintf("%s, not by %s", l, p.Service))
		}
		switch {
		case ok:
			held = append(held, fmt.Sprintf("%s %d %s", p.Proto, p.Port, here[0].Process))
		case len(here) > 0, p.Transient, p.VIP:
		case !nf.running(p.Service):
			problems = append(problems, fmt.Sprintf("%s free: %s is deployed but not running", p, p.Service))
		default:
			problems = append(problems, fmt.Sprintf("%s free although %s runs", p, p.Service))
		}
	}
	switch {
	case len(problems) > 0:
		r.Status, r.Value = Fail, strings.Join(problems, "; ")
	case len(held) == 0:
		r.Status, r.Value = OK, fmt.Sprintf("%d engine ports free", free)
	default:
		r.Status = OK
		r.Value = fmt.Sprintf("%d held by their engines", len(held))
		if free > 0 {
			r.Value += fmt.Sprintf(", %d free for engines not deployed yet", free)
		}
		r.Detail = strings.Join(held, ", ")
	}
	return r
}

// exposed lists the engine processes that serve clients and where each may
// listen besides the management address and loopback.
var exposed = []string{"memcached", "mariadbd", "beam.smp", "epmd", "haproxy", "chronyd", "hastack"}

// judgeListeners is the exposure of the engines' sockets: every engine
// listens on the management address (or loopback) only, haproxy also on
// the VIP, and memcached never on UDP (no OpenStack client uses it, and
// memcached over UDP is a well-known traffic amplifier).
func judgeListeners(c *spec.Cluster, nf *nodeFacts) Result {
	n := nf.Spec
	r := Result{Node: n.Name, Check: "listeners", Limit: "engines on " + n.Address + " (haproxy also on the VIP) only; memcached without UDP"}
	if nf.Listeners.Err != nil {
		r.Status, r.Value = Fail, "not measured: "+errText(nf.Listeners.Err)
		return r
	}
	vip := c.Spec.Database.Endpoint.VIP
	var problems []string
	seen := 0
	for _, l := range nf.Listeners.V {
		proc := l.Process
		if !slices.ContainsFunc(exposed, func(p string) bool { return strings.HasPrefix(proc, p) }) {
			continue
		}
		// An unconnected UDP socket on an ephemeral port is a client, not a
		// service: the Erlang VM's DNS resolver (inet_res) shows up as
		// beam.smp on udp 0.0.0.0:<random>. Only memcached's and chronyd's
		// UDP sockets serve anyone.
		if l.Proto == "udp" && proc != "memcached" && proc != "chronyd" {
			continue
		}
		seen++
		switch {
		case proc == "memcached" && l.Proto == "udp":
			problems = append(problems, fmt.Sprintf("memcached listens on UDP %s", net.JoinHostPort(l.Address, strconv.Itoa(l.Port))))
		case l.Address == n.Address || loopback(l.Address):
		case proc == "haproxy" && l.Address == vip:
		default:
			problems = append(problems, fmt.Sprintf("%s listens on %s %s, not only on the management address", proc, l.Proto, net.JoinHostPort(l.Address, strconv.Itoa(l.Port))))
		}
	}
	switch {
	case len(problems) > 0:
		r.Status, r.Value = Fail, strings.Join(problems, "; ")
	case seen == 0:
		r.Status, r.Value = OK, "no engine listens yet"
	default:
		r.Status, r.Value = OK, fmt.Sprintf("%d engine sockets, all on the management address or loopback", seen)
	}
	return r
}
