package spec

import (
	"hash/fnv"
	"time"
)

// Defaults of the engines and of the source document, in one place.
const (
	DefaultMemcachedPort     = 11211
	DefaultMemcachedMemoryMB = 1024
	DefaultMemcachedMaxConns = 4096
	DefaultDatabasePort      = 3306
	DefaultSSTMethod         = "mariabackup"
	DefaultGCacheSize        = "1G"
	DefaultDBMaxConnections  = 4096
	DefaultEndpointCheckPort = 9200
	DefaultEndpointStatsPort = 8404
	DefaultEndpointPeersPort = 10000
	DefaultRabbitPort        = 5672
	DefaultRabbitMgmtPort    = 15672
	DefaultRabbitDistPort    = 25672
	DefaultRabbitNetTickTime = 5 * time.Second
	DefaultClientHeartbeat   = 4 * time.Second
	// Failure detection: see docs/spec.md for what each costs.
	DefaultGaleraKeepalive    = 500 * time.Millisecond
	DefaultGaleraSuspect      = 1500 * time.Millisecond
	DefaultAdvertInterval     = 500 * time.Millisecond
	DefaultCheckInterval      = 500 * time.Millisecond
	DefaultCacheClientTimeout = 300 * time.Millisecond
	DefaultCacheDeadRetry     = 10 * time.Second
	DefaultRabbitVHost        = "/"
	DefaultRabbitUser         = "openstack"
	DefaultMaxLatency         = 2 * time.Millisecond
	DefaultMaxClockOffset     = 50 * time.Millisecond
	DefaultManagementIfName   = "eth0"
	// The drill's targets: issue 15's, for a hung or vanished controller.
	DefaultDrillDBWindow          = 3 * time.Second
	DefaultDrillMQWindow          = 10 * time.Second
	DefaultDrillRPCWindow         = 10 * time.Second
	DefaultDrillRPCKillMQWindow   = 1 * time.Second
	DefaultDrillCacheWorstCall    = 500 * time.Millisecond
	DefaultDrillCacheMissedPoints = 5.0
	DefaultDrillCacheServedAgain  = 30 * time.Second
	DefaultDrillHealthyAfter      = 90 * time.Second
	GaleraReplicationPort         = 4567
	GaleraISTPort                 = 4568
	GaleraSSTPort                 = 4444
	NTPPort                       = 123
	defaultControllerCores        = 4
	defaultControllerMemoryGB     = 12
	defaultControllerDiskGB       = 120
	defaultComputeCores           = 8
	defaultComputeMemoryGB        = 12
	defaultComputeDiskGB          = 120
	defaultNICs                   = 2
)

// OpenStack releases whose option names hastack knows: "zed" is the one
// whose libraries Debian 12 ships (oslo.messaging 14.0.3, oslo.cache 3.2.0,
// oslo.config 9.0.0), "2026.1" (Gazpacho) the current one. The default is
// Debian 12's, the platform hastack deploys on.
var OpenStackReleases = []string{"zed", "2026.1"}

// DefaultOpenStackRelease is the release rendered when the spec names none.
const DefaultOpenStackRelease = "zed"

// Partition handling modes of RabbitMQ.
const (
	PartitionPauseMinority = "pause_minority"
	PartitionAutoheal      = "autoheal"
	PartitionIgnore        = "ignore"
)

// ApplyDefaults fills every unset field. It is the only place defaults are
// decided; render, deploy and check read the defaulted spec.
func (c *Cluster) ApplyDefaults() {
	s := &c.Spec
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if len(n.Interfaces) == 0 {
			n.Interfaces = []Interface{{Name: DefaultManagementIfName, Network: ManagementNetwork}}
		}
		for j := range n.Interfaces {
			if n.Interfaces[j].Network == ManagementNetwork && n.Interfaces[j].Address == "" {
				n.Interfaces[j].Address = n.Address
			}
		}
	}

	m := &s.Memcached
	setInt(&m.Port, DefaultMemcachedPort)
	setInt(&m.MemoryMB, DefaultMemcachedMemoryMB)
	setInt(&m.MaxConnections, DefaultMemcachedMaxConns)
	setDuration(&m.ClientTimeout, DefaultCacheClientTimeout)
	setDuration(&m.ClientDeadRetry, DefaultCacheDeadRetry)

	d := &s.Database
	setStr(&d.Flavor, FlavorMariaDB)
	setInt(&d.Port, DefaultDatabasePort)
	setStr(&d.ClusterName, c.Metadata.Name)
	setStr(&d.SSTMethod, DefaultSSTMethod)
	setStr(&d.GCacheSize, DefaultGCacheSize)
	setInt(&d.MaxConnections, DefaultDBMaxConnections)
	setDuration(&d.KeepalivePeriod, DefaultGaleraKeepalive)
	setDuration(&d.SuspectTimeout, DefaultGaleraSuspect)
	e := &d.Endpoint
	setInt(&e.Port, d.Port)
	setInt(&e.CheckPort, DefaultEndpointCheckPort)
	setInt(&e.StatsPort, DefaultEndpointStatsPort)
	setInt(&e.PeersPort, DefaultEndpointPeersPort)
	setDuration(&e.AdvertInterval, DefaultAdvertInterval)
	setDuration(&e.CheckInterval, DefaultCheckInterval)
	if e.VirtualRouterID == 0 {
		// Stable per cluster, so two hastack clusters on one network are
		// unlikely to collide; set it explicitly when they do.
		h := fnv.New32a()
		h.Write([]byte(c.Metadata.Name))
		e.VirtualRouterID = int(h.Sum32()%254) + 1
	}

	r := &s.RabbitMQ
	setInt(&r.Port, DefaultRabbitPort)
	setInt(&r.ManagementPort, DefaultRabbitMgmtPort)
	setInt(&r.DistPort, DefaultRabbitDistPort)
	setStr(&r.QueueType, QueueQuorum)
	if r.PartitionHandling == "" {
		r.PartitionHandling = DefaultPartitionHandling(len(c.Controllers()))
	}
	setDuration(&r.NetTickTime, DefaultRabbitNetTickTime)
	setDuration(&r.ClientHeartbeat, DefaultClientHeartbeat)
	setStr(&r.VHost, DefaultRabbitVHost)
	setStr(&r.User, DefaultRabbitUser)

	setStr(&s.OpenStack.Release, DefaultOpenStackRelease)

	q := &s.Requirements
	setMinimums(&q.Controller, Minimums{defaultControllerCores, defaultControllerMemoryGB, defaultControllerDiskGB, defaultNICs})
	setMinimums(&q.Compute, Minimums{defaultComputeCores, defaultComputeMemoryGB, defaultComputeDiskGB, defaultNICs})
	if q.MaxLatency.Duration == 0 {
		q.MaxLatency.Duration = DefaultMaxLatency
	}
	if q.MaxClockOffset.Duration == 0 {
		q.MaxClockOffset.Duration = DefaultMaxClockOffset
	}

	t := &s.Drill.Targets
	setDur(&t.DB.Window, DefaultDrillDBWindow)
	setDur(&t.MQ.Window, DefaultDrillMQWindow)
	setDur(&t.RPC.Window, DefaultDrillRPCWindow)
	setDur(&t.RPC.KillMQWindow, DefaultDrillRPCKillMQWindow)
	setDur(&t.Cache.WorstCall, DefaultDrillCacheWorstCall)
	if t.Cache.MissedExtraPoints == nil {
		v := DefaultDrillCacheMissedPoints
		t.Cache.MissedExtraPoints = &v
	}
	setDur(&t.Cache.ServedAgainWithin, DefaultDrillCacheServedAgain)
	setDur(&t.HealthyAfter, DefaultDrillHealthyAfter)
}

// setDur fills a duration left out of the spec.
func setDur(p **Duration, v time.Duration) {
	if *p == nil {
		*p = &Duration{Duration: v}
	}
}

// DefaultPartitionHandling is the RabbitMQ partition handling that suits a
// cluster of n nodes: pause_minority needs a majority to exist after a split
// (3+ nodes); with 2 nodes both halves would pause, so autoheal is the only
// automatic choice; a single node has no partitions.
func DefaultPartitionHandling(n int) string {
	switch {
	case n >= 3:
		return PartitionPauseMinority
	case n == 2:
		return PartitionAutoheal
	default:
		return PartitionIgnore
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setStr(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setMinimums(p *Minimums, v Minimums) {
	setInt(&p.Cores, v.Cores)
	setInt(&p.MemoryGB, v.MemoryGB)
	setInt(&p.DiskGB, v.DiskGB)
	setInt(&p.NICs, v.NICs)
}

// SSH defaults.
const (
	DefaultSSHUser       = "root"
	DefaultSSHPort       = 22
	DefaultSSHKnownHosts = "~/.ssh/known_hosts"
)

// NodeSSH returns the SSH settings in force for node n: spec.ssh, overridden
// field by field by the node's own block, then the defaults (the host is the
// node's management address). ok is false when neither block exists: the
// node is a lab node. The SSH defaults are decided here rather than in
// ApplyDefaults because they inherit, and the blocks as written are kept so
// that validation can point at the field that is wrong.
func (c *Cluster) NodeSSH(n Node) (s SSH, ok bool) {
	if c.Spec.SSH == nil && n.SSH == nil {
		return SSH{}, false
	}
	if c.Spec.SSH != nil {
		s = *c.Spec.SSH
	}
	if o := n.SSH; o != nil {
		if o.Host != "" {
			s.Host = o.Host
		}
		if o.User != "" {
			s.User = o.User
		}
		if o.Port != 0 {
			s.Port = o.Port
		}
		if o.IdentityFile != "" {
			s.IdentityFile = o.IdentityFile
		}
		if o.Agent != nil {
			s.Agent = o.Agent
		}
		if o.KnownHosts != "" {
			s.KnownHosts = o.KnownHosts
		}
		if o.AcceptNewHostKeys != nil {
			s.AcceptNewHostKeys = o.AcceptNewHostKeys
		}
	}
	setStr(&s.Host, n.Address)
	setStr(&s.User, DefaultSSHUser)
	setInt(&s.Port, DefaultSSHPort)
	setStr(&s.KnownHosts, DefaultSSHKnownHosts)
	return s, true
}

func setDuration(p *Duration, v time.Duration) {
	if p.Duration == 0 && !p.explicit {
		p.Duration = v
	}
}
