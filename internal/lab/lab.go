// Package lab runs a cluster's worth of virtual nodes on one Linux machine.
//
// A lab node is a long-lived process of this very binary running as PID 1
// of its own PID, mount, UTS, IPC and network namespaces. That process
// bind-mounts the node's private copies of the engines' directories over
// their standard paths (/etc/mysql, /var/lib/rabbitmq, /run, /var/log...),
// sets the hostname, mounts a fresh /proc and /sys, reaps orphans, and runs
// the node's process supervisor (package supervise) on a unix socket. The
// host reaches the node's namespaces through that PID: commands run under
// nsenter, files are read and written through /proc/PID/root, and the
// network namespace is named <prefix>-<node> under /run/netns so that `ip
// netns exec` works too.
//
// Each spec network is a bridge on the host; each node NIC is a veth pair
// whose host end is on that bridge. The host takes one address on every lab
// network, so hastack, run on the host, reaches every node's management
// address like a real host's. Nodes get no default route: nothing a lab node
// sends can leave the machine.
//
// Everything the lab makes is recorded in <state>/lab.json as it is made, so
// Down can remove it after a half-finished Up, from a new shell.
package lab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hastack/hastack/internal/spec"
)

// Options place a lab on the machine. Tests use their own prefix, state
// folder and address ranges so they never touch an operator's lab.
type Options struct {
	// StateDir holds lab.json, the nodes' private folders and snapshots.
	// Default /var/lib/hastack/lab.
	StateDir string
	// Prefix starts every name the lab gives a host object: bridges,
	// veths, network namespaces. At most 4 characters. Default "hs".
	Prefix string
	// Exe is the binary a node runs as its init; default this binary.
	Exe string
	// Log receives progress lines; nil discards them.
	Log func(format string, a ...any)
	// OS, when set (debian-12, debian-13), makes every spec node a booted
	// Debian machine (systemd-nspawn, systemd as PID 1) rather than a
	// namespace node. Only Up reads it; the lab records it.
	OS string
	// Bare, with OS, leaves the engines out of the image: hastack's
	// packages phase installs them from the lab's package repository.
	Bare bool
}

// DefaultStateDir is where the lab keeps its state unless told otherwise.
const DefaultStateDir = "/var/lib/hastack/lab"

// Environment variables that place the lab when Options leave it open, so
// every command (lab, up, status) finds a lab made elsewhere than the
// default, e.g. by a test.
const (
	EnvStateDir = "HASTACK_LAB_STATE_DIR"
	EnvPrefix   = "HASTACK_LAB_PREFIX"
)

func (o Options) withDefaults() (Options, error) {
	if o.StateDir == "" {
		o.StateDir = os.Getenv(EnvStateDir)
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.Prefix == "" {
		o.Prefix = os.Getenv(EnvPrefix)
	}
	if o.Prefix == "" {
		o.Prefix = "hs"
	}
	if len(o.Prefix) > 4 || strings.ContainsAny(o.Prefix, " /-") {
		return o, fmt.Errorf("lab prefix %q: use at most 4 letters or digits", o.Prefix)
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("finding this binary to run as the nodes' init: %w", err)
		}
		o.Exe = exe
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	return o, nil
}

// Role of the lab's own stand-in for an upstream time server.
const RoleUpstreamNTP = "ntp-upstream"

// State is what lab.json records: the lab's plan and what has been made of
// it so far.
type State struct {
	Cluster  string    `json:"cluster"`
	SpecPath string    `json:"specPath,omitempty"`
	Prefix   string    `json:"prefix"`
	Created  time.Time `json:"created"`
	Ready    bool      `json:"ready"` // Up finished
	// OS is the release of a lab of booted hosts; empty for the namespace lab.
	OS       string      `json:"os,omitempty"`
	Bare     bool        `json:"bare,omitempty"`
	Networks []NetState  `json:"networks"`
	Nodes    []NodeState `json:"nodes"`
	// ForwardRules are host iptables FORWARD rules the lab added so bridged
	// traffic passes when bridge netfilter is on.
	ForwardRules [][]string `json:"forwardRules,omitempty"`
}

// NetState is one lab network: a bridge with a host address.
type NetState struct {
	Name    string `json:"name"`
	CIDR    string `json:"cidr"`
	Bridge  string `json:"bridge"`
	HostIP  string `json:"hostAddress"`
	Created bool   `json:"created"`
}

// NodeState is one lab node.
type NodeState struct {
	Name    string       `json:"name"`
	Role    string       `json:"role"`
	Address string       `json:"address"`
	NICs    []NICState   `json:"nics"`
	PID     int          `json:"pid,omitempty"`
	Start   uint64       `json:"startTime,omitempty"` // /proc/PID/stat field 22, guards against PID reuse
	NetNS   string       `json:"netns"`
	Root    string       `json:"root"` // host folder holding the node's private folders
	Extra   *UpstreamNTP `json:"upstreamNTP,omitempty"`
	// Booted is set for a booted host (a lab with OS); PID and Start are
	// then looked up when needed: they change when the machine reboots.
	Booted *BootedState `json:"booted,omitempty"`
}

// NICState is one NIC of a lab node.
type NICState struct {
	Name     string `json:"name"`    // inside the node, e.g. eth0
	Network  string `json:"network"` // spec network name
	Address  string `json:"address,omitempty"`
	Prefix   int    `json:"prefixLen"`
	HostVeth string `json:"hostVeth"`
}

// UpstreamNTP marks a node the lab runs as a stand-in for an upstream time
// server of spec.ntp.upstream (the lab has no internet).
type UpstreamNTP struct {
	Address string `json:"address"`
}

// Lab is a lab on this machine, up or half-made.
type Lab struct {
	opts  Options
	mu    sync.Mutex
	state State
}

func (l *Lab) statePath() string { return filepath.Join(l.opts.StateDir, "lab.json") }

// save records the state; called after every step that makes something.
func (l *Lab) save() error {
	l.mu.Lock()
	data, err := json.MarshalIndent(l.state, "", "  ")
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(l.opts.StateDir, 0o700); err != nil {
		return err
	}
	tmp := l.statePath() + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, l.statePath())
}

// ErrNoLab is returned by Open when no lab exists at the state folder.
var ErrNoLab = errors.New("no lab is up")

// Open returns the lab recorded in the state folder.
func Open(o Options) (*Lab, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(o.StateDir, "lab.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s); start one with 'hastack lab up'", ErrNoLab, filepath.Join(o.StateDir, "lab.json"))
	}
	if err != nil {
		return nil, err
	}
	l := &Lab{opts: o}
	if err := json.Unmarshal(data, &l.state); err != nil {
		return nil, fmt.Errorf("%s: %w (remove the lab with 'hastack lab down')", filepath.Join(o.StateDir, "lab.json"), err)
	}
	if l.state.Prefix != o.Prefix {
		return nil, fmt.Errorf("the lab at %s uses prefix %q, not %q", o.StateDir, l.state.Prefix, o.Prefix)
	}
	return l, nil
}

// State returns a copy of the lab's recorded state.
func (l *Lab) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state.clone()
}

// clone is a deep copy: callers may keep or change it freely.
func (s State) clone() State {
	c := s
	c.Networks = slices.Clone(s.Networks)
	c.Nodes = make([]NodeState, len(s.Nodes))
	for i, n := range s.Nodes {
		n.NICs = slices.Clone(n.NICs)
		if n.Extra != nil {
			x := *n.Extra
			n.Extra = &x
		}
		c.Nodes[i] = n
	}
	c.ForwardRules = make([][]string, len(s.ForwardRules))
	for i, r := range s.ForwardRules {
		c.ForwardRules[i] = slices.Clone(r)
	}
	if s.ForwardRules == nil {
		c.ForwardRules = nil
	}
	return c
}

// Entry is one line of 'hastack lab list'.
type Entry struct {
	Name      string            `json:"name"`
	Role      string            `json:"role"`
	Address   string            `json:"address"`
	Addresses map[string]string `json:"addresses"` // network -> address
	Running   bool              `json:"running"`
}

// List reports every node, spec nodes first, in spec order.
func (l *Lab) List() []Entry {
	s := l.State()
	var out []Entry
	for _, n := range s.Nodes {
		e := Entry{Name: n.Name, Role: n.Role, Address: n.Address, Addresses: map[string]string{}}
		for _, nic := range n.NICs {
			if nic.Address != "" {
				e.Addresses[nic.Network] = nic.Address
			}
		}
		e.Running = n.PID > 0 && alive(n.PID, n.Start)
		if n.Booted != nil {
			_, err := machineInit(n.Booted)
			e.Running = err == nil
		}
		out = append(out, e)
	}
	return out
}

// plan turns a validated spec into the lab's state before anything exists.
func plan(c *spec.Cluster, specPath string, o Options) (State, error) {
	s := State{Cluster: c.Metadata.Name, SpecPath: specPath, Prefix: o.Prefix, Created: time.Now().UTC()}
	used := map[netip.Addr]bool{}
	for _, n := range c.Spec.Nodes {
		for _, i := range n.Interfaces {
			if a, err := netip.ParseAddr(i.Address); err == nil {
				used[a] = true
			}
		}
	}
	if a, err := netip.ParseAddr(c.Spec.Database.Endpoint.VIP); err == nil {
		used[a] = true
	}
	for _, u := range c.Spec.NTP.Upstream {
		if a, err := netip.ParseAddr(u); err == nil {
			used[a] = true
		}
	}
	prefixes := map[string]netip.Prefix{}
	for i, n := range c.Spec.Networks {
		p, err := netip.ParsePrefix(n.CIDR)
		if err != nil {
			return s, fmt.Errorf("spec.networks[%d].cidr: %w", i, err)
		}
		p = p.Masked()
		prefixes[n.Name] = p
		host, ok := firstFree(p, used)
		if !ok {
			return s, fmt.Errorf("spec.networks[%d] %s: no free address left for the host on %s", i, n.Name, p)
		}
		used[host] = true
		s.Networks = append(s.Networks, NetState{Name: n.Name, CIDR: p.String(), Bridge: fmt.Sprintf("%sbr%d", o.Prefix, i), HostIP: host.String()})
	}
	nodeRoot := func(name string) string { return filepath.Join(o.StateDir, "nodes", name) }
	for ni, n := range c.Spec.Nodes {
		ns := NodeState{Name: n.Name, Role: n.Role, Address: n.Address, NetNS: o.Prefix + "-" + n.Name, Root: nodeRoot(n.Name)}
		for ii, i := range n.Interfaces {
			nic := NICState{Name: i.Name, Network: i.Network, Address: i.Address, Prefix: prefixes[i.Network].Bits(), HostVeth: fmt.Sprintf("%sv%dn%d", o.Prefix, ni, ii)}
			ns.NICs = append(ns.NICs, nic)
		}
		s.Nodes = append(s.Nodes, ns)
	}
	// Stand-ins for upstream time servers: the lab has no internet, so an
	// upstream address inside a lab network becomes one more lab node that
	// serves time; any other address cannot be reached.
	names := map[string]bool{}
	for _, n := range c.Spec.Nodes {
		names[n.Name] = true
	}
	for ui, u := range c.Spec.NTP.Upstream {
		a, err := netip.ParseAddr(u)
		if err != nil {
			return s, fmt.Errorf("spec.ntp.upstream[%d] %q: the lab needs an address, not a name: it has no internet and runs a stand-in time server at that address", ui, u)
		}
		var netName string
		for _, nw := range c.Spec.Networks {
			if prefixes[nw.Name].Contains(a) {
				netName = nw.Name
				break
			}
		}
		if netName != spec.ManagementNetwork {
			return s, fmt.Errorf("spec.ntp.upstream[%d] %s is outside the management network: the lab has no internet, so it runs a stand-in time server at each upstream address, which must lie in the management network (%s)", ui, u, prefixes[spec.ManagementNetwork])
		}
		name := fmt.Sprintf("ntp-upstream%d", ui+1)
		for names[name] {
			name += "x"
		}
		names[name] = true
		s.Nodes = append(s.Nodes, NodeState{
			Name: name, Role: RoleUpstreamNTP, Address: u, NetNS: o.Prefix + "-" + name, Root: nodeRoot(name),
			NICs:  []NICState{{Name: "eth0", Network: netName, Address: u, Prefix: prefixes[netName].Bits(), HostVeth: fmt.Sprintf("%su%d", o.Prefix, ui)}},
			Extra: &UpstreamNTP{Address: u},
		})
	}
	for _, n := range s.Nodes {
		if len(n.NetNS) > 64 {
			return s, fmt.Errorf("node name %q is too long for a network namespace name", n.Name)
		}
	}
	return s, nil
}

func firstFree(p netip.Prefix, used map[netip.Addr]bool) (netip.Addr, bool) {
	a := p.Addr().Next() // skip the network address
	for p.Contains(a) {
		next := a.Next()
		if !p.Contains(next) { // a is the broadcast address
			return netip.Addr{}, false
		}
		if !used[a] {
			return a, true
		}
		a = next
	}
	return netip.Addr{}, false
}

// hostsFile is /etc/hosts on every node: every lab node's name resolves to
// its management address, which RabbitMQ's node names depend on.
func hostsFile(s State) []byte {
	var b bytes.Buffer
	b.WriteString("# written by hastack lab: every lab node by its management address\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, "%s\t%s\n", n.Address, n.Name)
	}
	return b.Bytes()
}

// nodeByName finds a node of the lab.
func (l *Lab) nodeState(name string) (NodeState, error) {
	s := l.State()
	for _, n := range s.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	var names []string
	for _, n := range s.Nodes {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return NodeState{}, fmt.Errorf("no lab node %q (the lab has: %s)", name, strings.Join(names, ", "))
}
