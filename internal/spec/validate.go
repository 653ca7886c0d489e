package spec

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
)

var (
	dnsLabel   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	ifName     = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)
	hostOrIP   = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,252})$`)
	sizeSuffix = regexp.MustCompile(`^[1-9][0-9]*[MG]$`)
	vhostChars = regexp.MustCompile(`^/?[A-Za-z0-9_.-]*$`)
	userChars  = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	// unixUser is what Debian's adduser accepts by default.
	unixUser = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
)

// SSTMethods are the state snapshot transfer methods hastack renders.
var SSTMethods = []string{"mariabackup", "rsync"}

// Validate returns every problem of a defaulted spec at once: errors for
// what cannot work, warnings for what works with consequences.
func (c *Cluster) Validate() Problems {
	v := &validator{}
	c.validateHeader(v)
	nets := c.validateNetworks(v)
	c.validateNodes(v, nets)
	c.validateTopology(v)
	c.validateNTP(v)
	c.validateEngines(v, nets)
	c.validateRequirements(v)
	c.validateSSH(v)
	c.validateDrill(v)
	return v.ps
}

type validator struct{ ps Problems }

func (v *validator) errf(path, format string, a ...any) {
	v.ps = append(v.ps, Problem{Severity: Error, Path: path, Message: fmt.Sprintf(format, a...)})
}

func (v *validator) warnf(path, format string, a ...any) {
	v.ps = append(v.ps, Problem{Severity: Warning, Path: path, Message: fmt.Sprintf(format, a...)})
}

func (c *Cluster) validateHeader(v *validator) {
	if c.APIVersion != APIVersion {
		v.errf("apiVersion", "must be %q, not %q", APIVersion, c.APIVersion)
	}
	if c.Kind != Kind {
		v.errf("kind", "must be %q, not %q", Kind, c.Kind)
	}
	if !dnsLabel.MatchString(c.Metadata.Name) {
		v.errf("metadata.name", "%q is not a valid cluster name: use 1-63 lower-case letters, digits and '-'", c.Metadata.Name)
	}
}

func (c *Cluster) validateNetworks(v *validator) map[string]netip.Prefix {
	nets := map[string]netip.Prefix{}
	for i, n := range c.Spec.Networks {
		p := fmt.Sprintf("spec.networks[%d]", i)
		if !dnsLabel.MatchString(n.Name) {
			v.errf(p+".name", "%q is not a valid network name: use lower-case letters, digits and '-'", n.Name)
		} else if _, dup := nets[n.Name]; dup {
			v.errf(p+".name", "network %q is defined twice", n.Name)
			continue
		}
		pfx, err := netip.ParsePrefix(n.CIDR)
		if err != nil || !pfx.Addr().Is4() {
			v.errf(p+".cidr", "%q is not an IPv4 CIDR such as 10.0.0.0/24", n.CIDR)
			continue
		}
		if pfx.Masked() != pfx {
			v.errf(p+".cidr", "%q has host bits set; the network is %s", n.CIDR, pfx.Masked())
			continue
		}
		for name, other := range nets {
			if other.Overlaps(pfx) {
				v.errf(p+".cidr", "%s overlaps network %q (%s)", pfx, name, other)
			}
		}
		nets[n.Name] = pfx
	}
	if _, ok := nets[ManagementNetwork]; !ok {
		v.errf("spec.networks", "no network named %q: every node's address and every engine live on it", ManagementNetwork)
	}
	return nets
}

func (c *Cluster) validateNodes(v *validator, nets map[string]netip.Prefix) {
	if len(c.Spec.Nodes) == 0 {
		v.errf("spec.nodes", "no nodes: list at least one controller")
		return
	}
	names := map[string]int{}
	addrs := map[netip.Addr]string{}
	mgmt, haveMgmt := nets[ManagementNetwork]
	for i, n := range c.Spec.Nodes {
		p := fmt.Sprintf("spec.nodes[%d]", i)
		switch {
		case n.Name == "":
			v.errf(p+".name", "missing: every node needs a name (its hostname)")
		case !dnsLabel.MatchString(n.Name):
			v.errf(p+".name", "%q is not a valid hostname: use lower-case letters, digits and '-' (RabbitMQ node names are rabbit@<name>)", n.Name)
		default:
			if j, dup := names[n.Name]; dup {
				v.errf(p+".name", "duplicate of spec.nodes[%d].name %q", j, n.Name)
			} else {
				names[n.Name] = i
			}
		}
		if n.Role != RoleController && n.Role != RoleCompute {
			v.errf(p+".role", "%q is not a role: use %q or %q", n.Role, RoleController, RoleCompute)
		}
		a, err := netip.ParseAddr(n.Address)
		switch {
		case n.Address == "":
			v.errf(p+".address", "missing: the node's management address")
		case err != nil || !a.Is4():
			v.errf(p+".address", "%q is not an IPv4 address", n.Address)
		default:
			if other, dup := addrs[a]; dup {
				v.errf(p+".address", "duplicate of %s", other)
			} else {
				addrs[a] = p + ".address"
			}
			if haveMgmt {
				checkHostAddr(v, p+".address", a, mgmt, ManagementNetwork)
			}
		}
		c.validateInterfaces(v, p, n, nets, addrs)
	}
}

func (c *Cluster) validateInterfaces(v *validator, p string, n Node, nets map[string]netip.Prefix, addrs map[netip.Addr]string) {
	ifnames := map[string]bool{}
	mgmtCount := 0
	for j, ifc := range n.Interfaces {
		ip := fmt.Sprintf("%s.interfaces[%d]", p, j)
		if !ifName.MatchString(ifc.Name) {
			v.errf(ip+".name", "%q is not a valid interface name (1-15 characters: letters, digits, _ . -)", ifc.Name)
		} else if ifnames[ifc.Name] {
			v.errf(ip+".name", "interface %q is listed twice on node %s", ifc.Name, n.Name)
		}
		ifnames[ifc.Name] = true
		pfx, known := nets[ifc.Network]
		if !known {
			v.errf(ip+".network", "%q is not one of spec.networks", ifc.Network)
		}
		if ifc.Network == ManagementNetwork {
			mgmtCount++
			if ifc.Address != n.Address {
				v.errf(ip+".address", "%q differs from the node's address %q: the management interface carries the node's address", ifc.Address, n.Address)
			}
			continue
		}
		if ifc.Address == "" {
			continue
		}
		a, err := netip.ParseAddr(ifc.Address)
		if err != nil || !a.Is4() {
			v.errf(ip+".address", "%q is not an IPv4 address", ifc.Address)
			continue
		}
		if other, dup := addrs[a]; dup {
			v.errf(ip+".address", "duplicate of %s", other)
		} else {
			addrs[a] = ip + ".address"
		}
		if known {
			checkHostAddr(v, ip+".address", a, pfx, ifc.Network)
		}
	}
	switch {
	case mgmtCount == 0:
		v.errf(p+".interfaces", "node %s has no interface on the %q network", n.Name, ManagementNetwork)
	case mgmtCount > 1:
		v.errf(p+".interfaces", "node %s has %d interfaces on the %q network; give it exactly one", n.Name, mgmtCount, ManagementNetwork)
	}
	if len(n.Interfaces) < 2 {
		v.warnf(p+".interfaces", "node %s has %d NIC; the source document asks for 2 (management + provider), so instance traffic would share the management network", n.Name, len(n.Interfaces))
	}
}

func checkHostAddr(v *validator, path string, a netip.Addr, pfx netip.Prefix, network string) {
	if !pfx.Contains(a) {
		v.errf(path, "%s is outside the %s network %s", a, network, pfx)
		return
	}
	if pfx.Bits() <= 30 && (a == pfx.Addr() || a == lastAddr(pfx)) {
		v.errf(path, "%s is the network or broadcast address of %s", a, pfx)
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n |= (1 << host) - 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func (c *Cluster) validateTopology(v *validator) {
	n := len(c.Controllers())
	r := c.Spec.RabbitMQ
	switch {
	case n == 0:
		v.errf("spec.nodes", "no controller: the database, message bus and cache run on controllers; give at least one node role %q (3 for high availability)", RoleController)
		return
	case n == 1:
		v.warnf("spec.nodes", "1 controller: nothing is highly available; any failure of it stops the database, the bus and the cache (use 3)")
	case n == 2:
		v.warnf("spec.database", "2 Galera nodes cannot fail over: when one fails, the other loses quorum and stops taking writes until an operator acts (use 3)")
	case n%2 == 0:
		v.warnf("spec.database", "%d Galera nodes: an even split (%d|%d) leaves no majority and stops writes on both halves; an odd number avoids that", n, n/2, n/2)
	}
	if n == 2 && r.QueueType == QueueQuorum {
		v.warnf("spec.rabbitmq.queueType", "quorum queues on 2 RabbitMQ nodes tolerate no failure: losing either node stops them (fine for tests and demos, use 3 in production)")
	}
	if n == 2 && r.PartitionHandling == PartitionPauseMinority {
		v.errf("spec.rabbitmq.partitionHandling", "pause_minority on 2 nodes pauses both halves of any partition, so the bus stops; use autoheal (or 3+ controllers)")
	}
}

func (c *Cluster) validateNTP(v *validator) {
	ups := c.Spec.NTP.Upstream
	if len(ups) == 0 {
		v.warnf("spec.ntp.upstream", "no upstream servers: the controllers keep one time among themselves (orphan mode) but drift from true time; list your site's lower-stratum servers")
	}
	seen := map[string]bool{}
	for i, u := range ups {
		p := fmt.Sprintf("spec.ntp.upstream[%d]", i)
		if !hostOrIP.MatchString(u) {
			v.errf(p, "%q is not a host name or IP address", u)
		}
		if seen[u] {
			v.errf(p, "%q is listed twice", u)
		}
		seen[u] = true
		for _, n := range c.Controllers() {
			if u == n.Name || u == n.Address {
				v.errf(p, "%q is controller %s; upstream servers must be more accurate sources outside the controllers", u, n.Name)
			}
		}
	}
	if len(ups) == 2 {
		v.warnf("spec.ntp.upstream", "2 upstream servers cannot out-vote each other when they disagree; 1 or 3+ are better")
	}
}

func (c *Cluster) validateEngines(v *validator, nets map[string]netip.Prefix) {
	s := c.Spec
	checkPort(v, "spec.memcached.port", s.Memcached.Port)
	if s.Memcached.MemoryMB < 16 {
		v.errf("spec.memcached.memoryMB", "%d MB is too small; memcached needs at least 16", s.Memcached.MemoryMB)
	}
	if s.Memcached.MaxConnections < 1 {
		v.errf("spec.memcached.maxConnections", "must be positive")
	}

	if !slices.Contains(OpenStackReleases, s.OpenStack.Release) {
		v.errf("spec.openstack.release", "%q is not a release hastack knows: use one of %s", s.OpenStack.Release, strings.Join(OpenStackReleases, ", "))
	}

	d := s.Database
	switch d.Flavor {
	case FlavorMariaDB:
	case FlavorGaleraMySQL, FlavorPerconaXtraDB:
		v.errf("spec.database.flavor", "%q is not supported yet: only %q is built and tested; the others need their own packages and SST tooling", d.Flavor, FlavorMariaDB)
	default:
		v.errf("spec.database.flavor", "%q is not a Galera flavour: use %q (%q and %q are planned)", d.Flavor, FlavorMariaDB, FlavorGaleraMySQL, FlavorPerconaXtraDB)
	}
	checkPort(v, "spec.database.port", d.Port)
	if !dnsLabel.MatchString(strings.ToLower(d.ClusterName)) {
		v.errf("spec.database.clusterName", "%q: use letters, digits and '-'", d.ClusterName)
	}
	if !slices.Contains(SSTMethods, d.SSTMethod) {
		v.errf("spec.database.sstMethod", "%q is not supported: use one of %s", d.SSTMethod, strings.Join(SSTMethods, ", "))
	}
	if !sizeSuffix.MatchString(d.GCacheSize) {
		v.errf("spec.database.gcacheSize", "%q is not a size such as 512M or 2G", d.GCacheSize)
	}
	if d.MaxConnections < 10 {
		v.errf("spec.database.maxConnections", "%d is too low for OpenStack services (each worker holds a pool)", d.MaxConnections)
	}
	validateTimings(v, &s)
	e := d.Endpoint
	vip, err := netip.ParseAddr(e.VIP)
	switch {
	case e.VIP == "":
		v.errf("spec.database.endpoint.vip", "missing: the virtual IP services connect to for the database (a free address on the management network)")
	case err != nil || !vip.Is4():
		v.errf("spec.database.endpoint.vip", "%q is not an IPv4 address", e.VIP)
	default:
		if m, ok := nets[ManagementNetwork]; ok {
			checkHostAddr(v, "spec.database.endpoint.vip", vip, m, ManagementNetwork)
		}
		for i, n := range s.Nodes {
			if n.Address == e.VIP {
				v.errf("spec.database.endpoint.vip", "%s is spec.nodes[%d] (%s); the VIP must be an address no node owns", e.VIP, i, n.Name)
			}
		}
	}
	if e.VirtualRouterID < 1 || e.VirtualRouterID > 255 {
		v.errf("spec.database.endpoint.virtualRouterID", "%d is outside 1-255", e.VirtualRouterID)
	}

	r := s.RabbitMQ
	switch r.QueueType {
	case QueueQuorum:
	case QueueMirrored:
		v.warnf("spec.rabbitmq.queueType", "classic mirrored queues are deprecated in RabbitMQ 3.x and removed in 4.0; hastack promotes only synchronised mirrors so no acknowledged message is lost, at the cost of availability while a mirror syncs")
	default:
		v.errf("spec.rabbitmq.queueType", "%q is not a queue type: use %q (default) or %q", r.QueueType, QueueQuorum, QueueMirrored)
	}
	switch r.PartitionHandling {
	case PartitionPauseMinority, PartitionAutoheal:
	case PartitionIgnore:
		if len(c.Controllers()) > 1 {
			v.warnf("spec.rabbitmq.partitionHandling", "ignore leaves both sides of a partition running and diverging; an operator must restart one side (use %s)", DefaultPartitionHandling(len(c.Controllers())))
		}
	default:
		v.errf("spec.rabbitmq.partitionHandling", "%q is not supported: use pause_minority, autoheal or ignore", r.PartitionHandling)
	}
	if t := r.NetTickTime.Duration; t < time.Second || t%time.Second != 0 {
		v.errf("spec.rabbitmq.netTickTime", "%s must be a whole number of seconds, at least 1s", t)
	} else if t < 5*time.Second {
		v.warnf("spec.rabbitmq.netTickTime", "%s is below 5s: short network hiccups will look like partitions", t)
	}
	switch hb := r.ClientHeartbeat.Duration; {
	case hb < time.Second || hb%time.Second != 0:
		v.errf("spec.rabbitmq.clientHeartbeat", "%s must be a whole number of seconds, at least 1s (oslo.messaging counts in seconds; 0 turns heartbeats off)", hb)
	case hb < 3*time.Second:
		v.warnf("spec.rabbitmq.clientHeartbeat", "%s: a service whose eventlet hub is busy for %s misses its heartbeats and is cut off a healthy broker", hb, 2*hb)
	case hb > 30*time.Second:
		v.warnf("spec.rabbitmq.clientHeartbeat", "%s: a frozen or cut-off broker is given up only after %s, and calls stall meanwhile", hb, 2*hb)
	}
	if !vhostChars.MatchString(r.VHost) {
		v.errf("spec.rabbitmq.vhost", "%q: use letters, digits, '_', '.', '-' and an optional leading '/'", r.VHost)
	}
	if !userChars.MatchString(r.User) || r.User == "guest" {
		v.errf("spec.rabbitmq.user", "%q: use a lower-case name other than guest (guest is removed)", r.User)
	}
	for _, p := range []struct {
		path string
		port int
	}{
		{"spec.rabbitmq.port", r.Port}, {"spec.rabbitmq.managementPort", r.ManagementPort}, {"spec.rabbitmq.distPort", r.DistPort},
		{"spec.database.endpoint.port", e.Port}, {"spec.database.endpoint.checkPort", e.CheckPort},
		{"spec.database.endpoint.statsPort", e.StatsPort}, {"spec.database.endpoint.peersPort", e.PeersPort},
	} {
		checkPort(v, p.path, p.port)
	}
	c.validatePortClashes(v)
}

// validatePortClashes finds two engines on one controller address and port.
// The endpoint listens on the VIP, so it may share the database's port.
func (c *Cluster) validatePortClashes(v *validator) {
	s := c.Spec
	used := map[int]string{}
	for _, p := range []struct {
		path string
		port int
	}{
		{"spec.memcached.port", s.Memcached.Port},
		{"spec.database.port", s.Database.Port},
		{"spec.database.endpoint.checkPort", s.Database.Endpoint.CheckPort},
		{"spec.database.endpoint.statsPort", s.Database.Endpoint.StatsPort},
		{"spec.database.endpoint.peersPort", s.Database.Endpoint.PeersPort},
		{"spec.rabbitmq.port", s.RabbitMQ.Port},
		{"spec.rabbitmq.managementPort", s.RabbitMQ.ManagementPort},
		{"spec.rabbitmq.distPort", s.RabbitMQ.DistPort},
		{"Galera replication (fixed)", GaleraReplicationPort},
		{"Galera IST (fixed)", GaleraISTPort},
		{"Galera SST (fixed)", GaleraSSTPort},
		{"epmd (fixed)", 4369},
		{"NTP (fixed)", NTPPort},
	} {
		if other, dup := used[p.port]; dup && strings.HasPrefix(p.path, "spec.") {
			v.errf(p.path, "port %d is already used by %s on every controller", p.port, other)
			continue
		}
		used[p.port] = p.path
	}
}

func (c *Cluster) validateRequirements(v *validator) {
	q := c.Spec.Requirements
	for _, m := range []struct {
		path string
		m    Minimums
	}{{"spec.requirements.controller", q.Controller}, {"spec.requirements.compute", q.Compute}} {
		if m.m.Cores < 0 || m.m.MemoryGB < 0 || m.m.DiskGB < 0 || m.m.NICs < 0 {
			v.errf(m.path, "minimums cannot be negative")
		}
	}
	if q.MaxLatency.Duration <= 0 {
		v.errf("spec.requirements.maxLatency", "must be positive")
	} else if q.MaxLatency.Duration > 2*time.Millisecond {
		v.warnf("spec.requirements.maxLatency", "%s is above the document's 2ms; Galera and RabbitMQ stay correct but every commit waits for the slowest controller", q.MaxLatency.Duration)
	}
	if q.MaxClockOffset.Duration <= 0 {
		v.errf("spec.requirements.maxClockOffset", "must be positive")
	}
}

func checkPort(v *validator, path string, port int) {
	if port < 1 || port > 65535 {
		v.errf(path, "%d is not a TCP port (1-65535)", port)
	}
}

// validateSSH checks every ssh block where it is written, then what the
// blocks give each node together.
func (c *Cluster) validateSSH(v *validator) {
	if b := c.Spec.SSH; b != nil {
		if b.Host != "" {
			v.errf("spec.ssh.host", "set the host per node (spec.nodes[].ssh.host): here it would send every node to one machine")
		}
		validateSSHBlock(v, "spec.ssh", *b)
	}
	keyless := false
	for i, n := range c.Spec.Nodes {
		p := fmt.Sprintf("spec.nodes[%d].ssh", i)
		if n.SSH != nil {
			if n.SSH.Host != "" && !hostOrIP.MatchString(n.SSH.Host) {
				v.errf(p+".host", "%q is not a host name or IP address", n.SSH.Host)
			}
			validateSSHBlock(v, p, *n.SSH)
		}
		s, ok := c.NodeSSH(n)
		if !ok || s.IdentityFile != "" || s.UseAgent() {
			continue
		}
		// Reported once at spec.ssh when every keyless node inherits it.
		if n.SSH == nil {
			keyless = true
			continue
		}
		v.errf(p, "no key for node %s: give identityFile (a private key file) or agent: true (the keys of the ssh-agent at $SSH_AUTH_SOCK)", n.Name)
	}
	if keyless {
		v.errf("spec.ssh", "no key: give identityFile (a private key file) or agent: true (the keys of the ssh-agent at $SSH_AUTH_SOCK)")
	}
}

func validateSSHBlock(v *validator, p string, b SSH) {
	if b.User != "" && !unixUser.MatchString(b.User) {
		v.errf(p+".user", "%q is not a user name", b.User)
	}
	if b.Port != 0 {
		checkPort(v, p+".port", b.Port)
	}
	for _, f := range []struct{ field, val string }{{"identityFile", b.IdentityFile}, {"knownHosts", b.KnownHosts}} {
		if strings.ContainsAny(f.val, "\n\x00") {
			v.errf(p+"."+f.field, "%q is not a file path", f.val)
		}
	}
	if b.AcceptsNewHostKeys() {
		v.warnf(p+".acceptNewHostKeys", "a host whose key is not in knownHosts yet is trusted on first use and recorded: whoever answers at its address then is trusted for good; prefer recording the keys beforehand (ssh-keyscan, checked against the hosts' consoles)")
	}
}

// validateTimings refuses failure-detection timings that cannot work. The
// limits are the engines' own (Galera's keepalive must fit several times in
// its suspect timeout, VRRPv3 counts in centiseconds) or plain sense (a
// timeout of 0 waits for ever or not at all).
func validateTimings(v *validator, s *ClusterSpec) {
	d := s.Database
	ka, su := d.KeepalivePeriod.Duration, d.SuspectTimeout.Duration
	switch {
	case ka < 100*time.Millisecond:
		v.errf("spec.database.keepalivePeriod", "%s is below 100ms: Galera would spend its time on keepalives", ka)
	case su < 2*ka:
		v.errf("spec.database.suspectTimeout", "%s is less than twice spec.database.keepalivePeriod (%s): one late keepalive would evict a healthy node; make it at least %s", su, ka, 2*ka)
	case su > time.Minute:
		v.errf("spec.database.suspectTimeout", "%s is over a minute: every commit waits that long when a node hangs", su)
	}
	e := d.Endpoint
	switch a := e.AdvertInterval.Duration; {
	case a < 10*time.Millisecond:
		v.errf("spec.database.endpoint.advertInterval", "%s is below 10ms, the smallest VRRPv3 interval (it counts in centiseconds)", a)
	case a%(10*time.Millisecond) != 0:
		v.errf("spec.database.endpoint.advertInterval", "%s is not a whole number of centiseconds (VRRPv3 counts in 10ms steps)", a)
	case a > 40950*time.Millisecond:
		v.errf("spec.database.endpoint.advertInterval", "%s is over 40.95s, the largest VRRPv3 interval", a)
	case a < 100*time.Millisecond:
		v.warnf("spec.database.endpoint.advertInterval", "%s: keepalived must be scheduled within %s, or a busy controller loses the VIP for nothing", a, 3*a)
	}
	switch c := e.CheckInterval.Duration; {
	case c < 100*time.Millisecond:
		v.errf("spec.database.endpoint.checkInterval", "%s is below 100ms: the health check itself needs that long to ask Galera", c)
	case c%time.Millisecond != 0:
		v.errf("spec.database.endpoint.checkInterval", "%s: HAProxy counts in whole milliseconds", c)
	}
	m := s.Memcached
	switch t := m.ClientTimeout.Duration; {
	case t <= 0:
		v.errf("spec.memcached.clientTimeout", "%s: a cache call needs a timeout above 0", t)
	case t < 50*time.Millisecond:
		v.errf("spec.memcached.clientTimeout", "%s is below 50ms: a healthy memcached under load would be taken for dead", t)
	case t > 5*time.Second:
		v.warnf("spec.memcached.clientTimeout", "%s: every request that meets a frozen memcached stalls that long", t)
	}
	switch r := m.ClientDeadRetry.Duration; {
	case r < time.Second || r%time.Second != 0:
		v.errf("spec.memcached.clientDeadRetry", "%s must be a whole number of seconds, at least 1s (oslo.cache counts in seconds)", r)
	case r > 5*time.Minute:
		v.warnf("spec.memcached.clientDeadRetry", "%s: a memcached that is back serves its share of the keys only that long after", r)
	}
}

// Bounds of the drill's targets: a window longer than the longest hold
// measures nothing a drill could show.
const (
	maxDrillWindow       = 10 * time.Minute
	maxDrillHealthyAfter = 30 * time.Minute
)

// validateDrill checks the drill's targets: each must be a bound a drill
// can meet and measure.
func (c *Cluster) validateDrill(v *validator) {
	t := c.Spec.Drill.Targets
	const p = "spec.drill.targets"
	for _, w := range []struct {
		path string
		d    *Duration
		zero bool // whether 0 is a target that can be met
	}{
		{p + ".db.window", t.DB.Window, true},
		{p + ".mq.window", t.MQ.Window, true},
		{p + ".rpc.window", t.RPC.Window, true},
		{p + ".rpc.killMQWindow", t.RPC.KillMQWindow, true},
		{p + ".cache.servedAgainWithin", t.Cache.ServedAgainWithin, true},
	} {
		if w.d == nil {
			continue
		}
		switch {
		case w.d.Duration < 0:
			v.errf(w.path, "%s is negative: an outage window is 0 or longer", w.d.Duration)
		case w.d.Duration > maxDrillWindow:
			v.errf(w.path, "%s is over %s, the longest a drill holds a fault: a target no drill can measure", w.d.Duration, maxDrillWindow)
		}
	}
	if d := t.Cache.WorstCall; d != nil {
		switch {
		case d.Duration <= 0:
			v.errf(p+".cache.worstCall", "%s cannot be met: every call takes some time; write a positive duration such as 500ms", d.Duration)
		case d.Duration > maxDrillWindow:
			v.errf(p+".cache.worstCall", "%s is over %s, the longest a drill holds a fault", d.Duration, maxDrillWindow)
		}
	}
	if m := t.Cache.MissedExtraPoints; m != nil && (*m < 0 || *m > 100 || *m != *m) {
		v.errf(p+".cache.missedExtraPoints", "%v is not a number of percentage points from 0 to 100", *m)
	}
	if d := t.HealthyAfter; d != nil {
		switch {
		case d.Duration <= 0:
			v.errf(p+".healthyAfter", "%s cannot be met: status takes time to see the heal; write a positive duration such as 90s", d.Duration)
		case d.Duration > maxDrillHealthyAfter:
			v.errf(p+".healthyAfter", "%s is over %s: a drill waits for status at most that long", d.Duration, maxDrillHealthyAfter)
		}
	}
	if t.RPC.Window != nil && t.RPC.KillMQWindow != nil && t.RPC.KillMQWindow.Duration > t.RPC.Window.Duration && t.RPC.Window.Duration >= 0 {
		v.warnf(p+".rpc.killMQWindow", "%s is longer than rpc.window %s: a killed broker (its clients get a reset) is held to a looser bound than a hung host", t.RPC.KillMQWindow.Duration, t.RPC.Window.Duration)
	}
}
