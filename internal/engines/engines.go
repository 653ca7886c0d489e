// Package engines is the one list of the engines hastack runs. Each entry
// says everything the rest of hastack needs to know of an engine: how its
// files are rendered, the phases of 'up' that bring it up, the services it
// runs on a node and the Debian unit of each, and the Debian packages it
// needs per role. Render, deploy, the lab and the systemd transport all read
// this list; a new engine is one package under internal/engine and one
// entry here.
package engines

import (
	"slices"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/engine/chrony"
	"github.com/hastack/hastack/internal/engine/endpoint"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/memcached"
	"github.com/hastack/hastack/internal/engine/neighbour"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/openstack"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
)

// Service is one process an engine runs on a node.
type Service struct {
	// Name is the service's name for the node's supervisor (node.Service).
	Name string
	// Unit is the Debian package's systemd unit that runs it on a systemd
	// host; "" when hastack writes a unit of its own (hastack-NAME.service).
	Unit string
}

// Inputs are what some phases need from the machine running hastack.
type Inputs struct {
	// Agent is hastack's own binary, installed on the controllers for the
	// Galera health check.
	Agent endpoint.AgentBinary
}

// Engine describes one engine.
type Engine struct {
	Name     string
	Renderer engine.Renderer
	// Phases are the engine's phases of 'up', in order.
	Phases func(Inputs) []plan.Phase
	// Services are the processes it runs on a node.
	Services []Service
	// Packages are the Debian packages it needs, by node role.
	Packages map[string][]string
	// HostSetting marks an entry that is no engine but a setting of the
	// node itself: it runs no service and needs no package.
	HostSetting bool
}

// All lists every engine in deploy order: time first (every other engine
// logs and compares against it), the database before the bus, and the
// endpoint, whose health check asks the database, last.
func All() []Engine {
	return []Engine{
		{
			Name:     "chrony",
			Renderer: chrony.Renderer{},
			Phases:   func(Inputs) []plan.Phase { return []plan.Phase{chrony.Phase()} },
			Services: []Service{{Name: "chrony", Unit: "chrony.service"}},
			Packages: map[string][]string{spec.RoleController: {"chrony"}, spec.RoleCompute: {"chrony"}},
		},
		{
			// Not an engine: the kernel's neighbour timers of the
			// management NIC, on every node, so the clients of every engine
			// learn in seconds that a peer vanished.
			Name:        "neighbour",
			Renderer:    neighbour.Renderer{},
			Phases:      func(Inputs) []plan.Phase { return []plan.Phase{neighbour.Phase()} },
			HostSetting: true,
		},
		{
			Name:     "memcached",
			Renderer: memcached.Renderer{},
			Phases:   func(Inputs) []plan.Phase { return []plan.Phase{memcached.Phase()} },
			Services: []Service{{Name: "memcached", Unit: "memcached.service"}},
			Packages: map[string][]string{spec.RoleController: {"memcached"}},
		},
		{
			Name:     "galera",
			Renderer: galera.Renderer{},
			Phases: func(Inputs) []plan.Phase {
				return []plan.Phase{galera.Phase(), galera.ServiceDatabasesPhase(ServiceUsers())}
			},
			Services: []Service{{Name: galera.ServiceName, Unit: "mariadb.service"}},
			// rsync and socat: the state transfer's helpers; mariadb-backup:
			// the SST method.
			Packages: map[string][]string{spec.RoleController: {"mariadb-server", "mariadb-client", "galera-4", "mariadb-backup", "rsync", "socat"}},
		},
		{
			Name:     "rabbitmq",
			Renderer: rabbitmq.Renderer{},
			Phases:   func(Inputs) []plan.Phase { return []plan.Phase{rabbitmq.TakeOverPhase(), rabbitmq.Phase()} },
			Services: []Service{{Name: rabbitmq.ServiceName, Unit: "rabbitmq-server.service"}},
			Packages: map[string][]string{spec.RoleController: {"rabbitmq-server"}},
		},
		{
			Name:     "endpoint",
			Renderer: endpoint.Renderer{},
			Phases:   func(in Inputs) []plan.Phase { return []plan.Phase{endpoint.Phase(in.Agent)} },
			Services: []Service{
				{Name: endpoint.AgentService},
				{Name: endpoint.HAProxyService, Unit: "haproxy.service"},
				{Name: endpoint.KeepalivedService, Unit: "keepalived.service"},
			},
			Packages: map[string][]string{spec.RoleController: {"haproxy", "keepalived"}},
		},
	}
}

// WithServices lists the entries that run services (every engine; not the
// host settings), in deploy order: what a restart can name.
func WithServices() []Engine {
	var out []Engine
	for _, e := range All() {
		if !e.HostSetting {
			out = append(out, e)
		}
	}
	return out
}

// Renderers are every engine's renderer, in deploy order.
func Renderers() []engine.Renderer {
	var out []engine.Renderer
	for _, e := range All() {
		out = append(out, e.Renderer)
	}
	return out
}

// Phases are every engine's phases of 'up', in deploy order.
func Phases(in Inputs) []plan.Phase {
	var out []plan.Phase
	for _, e := range All() {
		out = append(out, e.Phases(in)...)
	}
	return out
}

// Unit is the Debian unit that runs a service, "" when hastack runs it
// under a unit of its own.
func Unit(service string) string {
	for _, e := range All() {
		for _, s := range e.Services {
			if s.Name == service {
				return s.Unit
			}
		}
	}
	return ""
}

// IsService reports whether name is a service of one of the engines.
func IsService(name string) bool {
	for _, e := range All() {
		for _, s := range e.Services {
			if s.Name == name {
				return true
			}
		}
	}
	return false
}

// Packages are the Debian packages a role needs for every engine, plus
// extra (tools of the role's own), without repeats, in a stable order.
func Packages(role string, extra ...string) []string {
	var out []string
	for _, e := range All() {
		for _, p := range e.Packages[role] {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	for _, p := range extra {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// roleTools are the packages a role needs beyond its engines'.
// iputils-ping: 'check' measures controller-to-controller latency with
// ping, which a minimal Debian does not have.
var roleTools = map[string][]string{spec.RoleController: {"iputils-ping"}}

// PackagesFor lists the packages a node needs: its role's engines' and
// the role's tools.
func PackagesFor(n spec.Node) []string {
	return Packages(n.Role, roleTools[n.Role]...)
}

// ServiceUsers are the OpenStack services' database users and the
// databases each owns, as the render refers to them.
func ServiceUsers() []galera.ServiceUser {
	var out []galera.ServiceUser
	idx := map[string]int{}
	for _, d := range openstack.Databases() {
		i, ok := idx[d.Service]
		if !ok {
			i = len(out)
			idx[d.Service] = i
			out = append(out, galera.ServiceUser{Name: d.Service, Secret: openstack.DatabasePasswordSecret(d.Service)})
		}
		out[i].Databases = append(out[i].Databases, d.Name)
	}
	return out
}
