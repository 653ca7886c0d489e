// Package spec holds the cluster specification (hastack.yaml): its types,
// strict loading, defaults and validation. Every other package reads the
// cluster through these types; none of them parses YAML on its own.
package spec

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// APIVersion and Kind identify a hastack cluster spec.
const (
	APIVersion = "hastack/v1alpha1"
	Kind       = "Cluster"
)

// Node roles.
const (
	RoleController = "controller"
	RoleCompute    = "compute"
)

// ManagementNetwork is the network every node's address lives on; all
// engines bind to it.
const ManagementNetwork = "management"

// Database flavours named by the source document. Only MariaDB is supported.
const (
	FlavorMariaDB       = "mariadb"
	FlavorGaleraMySQL   = "galera-mysql"
	FlavorPerconaXtraDB = "percona-xtradb"
)

// RabbitMQ queue types.
const (
	QueueQuorum   = "quorum"
	QueueMirrored = "mirrored"
)

// Cluster is the whole hastack.yaml document.
type Cluster struct {
	APIVersion string      `yaml:"apiVersion"`
	Kind       string      `yaml:"kind"`
	Metadata   Metadata    `yaml:"metadata"`
	Spec       ClusterSpec `yaml:"spec"`
}

// Metadata names the cluster.
type Metadata struct {
	Name string `yaml:"name"`
}

// ClusterSpec is everything under spec:.
type ClusterSpec struct {
	Networks []Network `yaml:"networks"`
	// SSH, when set, reaches every node over SSH with these settings; a
	// node's own ssh block overrides them field by field. With neither,
	// a node is a lab node on this machine.
	SSH          *SSH         `yaml:"ssh,omitempty"`
	Nodes        []Node       `yaml:"nodes"`
	NTP          NTP          `yaml:"ntp"`
	Memcached    Memcached    `yaml:"memcached"`
	Database     Database     `yaml:"database"`
	RabbitMQ     RabbitMQ     `yaml:"rabbitmq"`
	OpenStack    OpenStack    `yaml:"openstack"`
	Requirements Requirements `yaml:"requirements"`
	Drill        Drill        `yaml:"drill"`
}

// Network is a layer-2 network the nodes share, e.g. management or provider.
type Network struct {
	Name string `yaml:"name"`
	CIDR string `yaml:"cidr"`
}

// Node is one host of the control plane or of the compute pool.
type Node struct {
	Name       string      `yaml:"name"`
	Role       string      `yaml:"role"`
	Address    string      `yaml:"address"`
	Interfaces []Interface `yaml:"interfaces"`
	// SSH is how hastack reaches this node, as written; Cluster.NodeSSH
	// gives the settings in force (inherited from spec.ssh, defaulted).
	SSH *SSH `yaml:"ssh,omitempty"`
}

// SSH is how hastack reaches a real host: key authentication only, host
// keys checked against a known_hosts file, sudo when the user is not root.
// Unset fields inherit from spec.ssh, then take the defaults.
type SSH struct {
	// Host is the name or address to connect to; default the node's
	// management address. Per node only.
	Host string `yaml:"host,omitempty"`
	// User logs in; default root. Any other user needs passwordless sudo:
	// hastack runs every command through 'sudo -n'.
	User string `yaml:"user,omitempty"`
	// Port of the host's sshd; default 22.
	Port int `yaml:"port,omitempty"`
	// IdentityFile is a private key (OpenSSH or PEM format, not
	// passphrase-protected: use the agent for those). A relative path is
	// relative to the spec's folder; ~ is the home folder.
	IdentityFile string `yaml:"identityFile,omitempty"`
	// Agent offers the keys of the ssh-agent at $SSH_AUTH_SOCK.
	Agent *bool `yaml:"agent,omitempty"`
	// KnownHosts is the known_hosts file host keys are checked against;
	// default ~/.ssh/known_hosts. Relative paths as for IdentityFile.
	KnownHosts string `yaml:"knownHosts,omitempty"`
	// AcceptNewHostKeys trusts the key of a host that is not in KnownHosts
	// yet and records it there, like OpenSSH's StrictHostKeyChecking=
	// accept-new. A key that differs from the recorded one is always
	// refused.
	AcceptNewHostKeys *bool `yaml:"acceptNewHostKeys,omitempty"`
}

// UseAgent reports whether the agent's keys are offered.
func (s SSH) UseAgent() bool { return s.Agent != nil && *s.Agent }

// AcceptsNewHostKeys reports whether unknown host keys are trusted on first
// use.
func (s SSH) AcceptsNewHostKeys() bool { return s.AcceptNewHostKeys != nil && *s.AcceptNewHostKeys }

// Sudo reports whether commands go through sudo: whenever the user is not
// root. There is no setting for it: hastack needs root on every node, and
// sudo is the only other way to it.
func (s SSH) Sudo() bool { return s.User != "root" }

// Interface is one NIC of a node, attached to one of spec.networks.
type Interface struct {
	Name    string `yaml:"name"`
	Network string `yaml:"network"`
	// Address is optional except that the management interface always
	// carries the node's address. Provider NICs are often unaddressed.
	Address string `yaml:"address,omitempty"`
}

// NTP configures the time hierarchy of the source document: controllers
// follow Upstream, every other node follows the controllers.
type NTP struct {
	Upstream []string `yaml:"upstream"`
}

// Memcached configures the one memcached instance on every controller.
type Memcached struct {
	Port           int `yaml:"port"`
	MemoryMB       int `yaml:"memoryMB"`
	MaxConnections int `yaml:"maxConnections"`
	// ClientTimeout is how long a service's cache call waits for one
	// memcached before it treats it as dead (oslo.cache's socket timeout;
	// keystonemiddleware takes whole seconds, so at least 1 s there).
	ClientTimeout Duration `yaml:"clientTimeout"`
	// ClientDeadRetry is how long a service leaves a memcached it found
	// dead before it tries it again.
	ClientDeadRetry Duration `yaml:"clientDeadRetry"`
}

// Database configures the Galera cluster on the controllers and the single
// endpoint services connect to.
type Database struct {
	Flavor         string `yaml:"flavor"`
	Port           int    `yaml:"port"`
	ClusterName    string `yaml:"clusterName"`
	SSTMethod      string `yaml:"sstMethod"`
	GCacheSize     string `yaml:"gcacheSize"`
	MaxConnections int    `yaml:"maxConnections"`
	// KeepalivePeriod is how often a Galera node that has nothing to send
	// tells the others it is alive (evs.keepalive_period).
	KeepalivePeriod Duration `yaml:"keepalivePeriod"`
	// SuspectTimeout is how long Galera waits without a message from a
	// node before the others drop it from the cluster
	// (evs.suspect_timeout). Commits wait meanwhile.
	SuspectTimeout Duration `yaml:"suspectTimeout"`
	Endpoint       Endpoint `yaml:"endpoint"`
}

// Endpoint is the database endpoint: HAProxy on every controller behind a
// keepalived virtual IP, sending every write to one Synced Galera node.
type Endpoint struct {
	VIP             string `yaml:"vip"`
	Port            int    `yaml:"port"`
	CheckPort       int    `yaml:"checkPort"`
	StatsPort       int    `yaml:"statsPort"`
	PeersPort       int    `yaml:"peersPort"`
	VirtualRouterID int    `yaml:"virtualRouterID"`
	// AdvertInterval is keepalived's VRRP advertisement interval: the
	// backups take the VIP after about three missed adverts.
	AdvertInterval Duration `yaml:"advertInterval"`
	// CheckInterval is how often HAProxy asks each Galera node's health
	// check, and how long one check may take; two failed checks in a row
	// mark the node down.
	CheckInterval Duration `yaml:"checkInterval"`
}

// RabbitMQ configures the message bus cluster on the controllers.
type RabbitMQ struct {
	Port              int      `yaml:"port"`
	ManagementPort    int      `yaml:"managementPort"`
	DistPort          int      `yaml:"distPort"`
	QueueType         string   `yaml:"queueType"`
	PartitionHandling string   `yaml:"partitionHandling"`
	NetTickTime       Duration `yaml:"netTickTime"`
	// ClientHeartbeat is the services' heartbeat_timeout_threshold: a
	// broker that sends nothing for twice this long (frozen, cut off) is
	// given up and the next one used.
	ClientHeartbeat Duration `yaml:"clientHeartbeat"`
	VHost           string   `yaml:"vhost"`
	User            string   `yaml:"user"`
}

// OpenStack describes the services that use the shared layer: the release
// whose option names the rendered service configs ('hastack render') and
// 'hastack lint' follow.
type OpenStack struct {
	Release string `yaml:"release"`
}

// Requirements are the minimums of the source document's hardware table and
// its latency limit, plus the clock offset hastack tolerates.
type Requirements struct {
	Controller     Minimums `yaml:"controller"`
	Compute        Minimums `yaml:"compute"`
	MaxLatency     Duration `yaml:"maxLatency"`
	MaxClockOffset Duration `yaml:"maxClockOffset"`
}

// Drill is what 'hastack drill' holds the layer to. Every target is a
// pointer so that a value written as 0 is told from one left out (and
// refused by validate where 0 cannot be met); ApplyDefaults fills each one
// left out. Data loss is never a target: any is a finding (exit 3).
type Drill struct {
	Targets DrillTargets `yaml:"targets"`
}

// DrillTargets are the drill's targets per workload; a miss is exit 1.
type DrillTargets struct {
	// DB: the longest outage window of writes through the VIP.
	DB WindowTarget `yaml:"db"`
	// MQ: the longest outage window of confirmed publishes.
	MQ WindowTarget `yaml:"mq"`
	// RPC: the longest outage window of oslo.messaging calls; KillMQ is
	// the window when only the broker was killed (its clients get a reset).
	RPC RPCTarget `yaml:"rpc"`
	// Cache: oslo.cache's worst single call, the keys missed, and how soon
	// a returning server's keys are served again.
	Cache CacheTarget `yaml:"cache"`
	// HealthyAfter bounds the time from the heal to 'status' healthy.
	HealthyAfter *Duration `yaml:"healthyAfter"`
}

// WindowTarget bounds an outage window.
type WindowTarget struct {
	Window *Duration `yaml:"window"`
}

// RPCTarget bounds the RPC workload's outage windows.
type RPCTarget struct {
	Window       *Duration `yaml:"window"`
	KillMQWindow *Duration `yaml:"killMQWindow"`
}

// CacheTarget bounds the cache workload.
type CacheTarget struct {
	WorstCall *Duration `yaml:"worstCall"`
	// MissedExtraPoints: the share of keys missed may be the share of
	// the servers the fault reaches (1/N for one of N) plus this many
	// percentage points.
	MissedExtraPoints *float64 `yaml:"missedExtraPoints"`
	// ServedAgainWithin bounds the time from the heal until the returning
	// server's keys are served again (no more misses).
	ServedAgainWithin *Duration `yaml:"servedAgainWithin"`
}

// Minimums is the least hardware one node of a role must have.
type Minimums struct {
	Cores    int `yaml:"cores"`
	MemoryGB int `yaml:"memoryGB"`
	DiskGB   int `yaml:"diskGB"`
	NICs     int `yaml:"nics"`
}

// Duration is a time.Duration written as "2ms", "10s" in YAML. explicit
// records that the spec wrote it, so that a written 0 is refused rather
// than taken for "unset" and given the default.
type Duration struct {
	time.Duration
	explicit bool
}

// UnmarshalYAML accepts Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a duration (write e.g. 2ms, 10s)", s)
	}
	d.Duration, d.explicit = v, true
	return nil
}

// MarshalYAML writes the Go duration syntax.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Controllers returns the controller nodes in spec order.
func (c *Cluster) Controllers() []Node { return c.byRole(RoleController) }

// Computes returns the compute nodes in spec order.
func (c *Cluster) Computes() []Node { return c.byRole(RoleCompute) }

func (c *Cluster) byRole(role string) []Node {
	var out []Node
	for _, n := range c.Spec.Nodes {
		if n.Role == role {
			out = append(out, n)
		}
	}
	return out
}

// Node returns the node with the given name.
func (c *Cluster) Node(name string) (Node, bool) {
	for _, n := range c.Spec.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Network returns the network with the given name.
func (c *Cluster) Network(name string) (Network, bool) {
	for _, n := range c.Spec.Networks {
		if n.Name == name {
			return n, true
		}
	}
	return Network{}, false
}

// ManagementInterface returns the node's NIC on the management network.
func (n Node) ManagementInterface() (Interface, bool) {
	for _, i := range n.Interfaces {
		if i.Network == ManagementNetwork {
			return i, true
		}
	}
	return Interface{}, false
}

// IsController reports whether the node runs the shared services.
func (n Node) IsController() bool { return n.Role == RoleController }
