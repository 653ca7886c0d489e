// Package rabbitmq runs the AMQP bus on the controllers: one Erlang cookie
// (a secret), every controller clustered, an OpenStack user and vhost, the
// default guest user never created, and quorum queues (or the source
// document's classic mirrored queues) for high availability.
package rabbitmq

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// Paths and the user of Debian's rabbitmq-server package.
const (
	User            = "rabbitmq"
	ConfigPath      = "/etc/rabbitmq/rabbitmq.conf"
	EnvPath         = "/etc/rabbitmq/rabbitmq-env.conf"
	AdvancedPath    = "/etc/rabbitmq/advanced.config"
	PluginsPath     = "/etc/rabbitmq/enabled_plugins"
	DefinitionsPath = "/etc/rabbitmq/definitions.json"
	CookiePath      = "/var/lib/rabbitmq/.erlang.cookie"
	// AdminUser is hastack's own administrator, used for provisioning and
	// health probes through the management API.
	AdminUser = "hastack"
	// MirroredPolicy is the name of the classic mirrored queue policy.
	MirroredPolicy = "ha-mirrored"
)

// NodeName is the Erlang node name of a controller.
func NodeName(n spec.Node) string { return "rabbit@" + n.Name }

// Renderer renders RabbitMQ's configuration for controllers.
type Renderer struct{}

// Name implements engine.Renderer.
func (Renderer) Name() string { return "rabbitmq" }

// Files implements engine.Renderer.
func (Renderer) Files(c *spec.Cluster, n spec.Node, s secrets.Source) ([]engine.File, error) {
	if !n.IsController() {
		return nil, nil
	}
	defs, err := Definitions(c, s)
	if err != nil {
		return nil, err
	}
	return []engine.File{
		engine.Config(EnvPath, envConf(c, n)),
		engine.Config(ConfigPath, rabbitConf(c, n)),
		engine.Config(AdvancedPath, advancedConfig(c, n)),
		engine.Config(PluginsPath, "[rabbitmq_management].\n"),
		engine.SecretFile(DefinitionsPath, User, defs),
		engine.SecretFile(CookiePath, User, []byte(s.Get(secrets.ErlangCookie))),
	}, nil
}

func envConf(c *spec.Cluster, n spec.Node) string {
	return engine.Header("#", c, n) + fmt.Sprintf(`
# Node name rabbit@<hostname>: every controller name must resolve to its
# management address on every controller.
NODENAME=%s
# Inter-node (Erlang distribution) traffic on one fixed port.
DIST_PORT=%d
# epmd on the management address (it always adds loopback itself).
export ERL_EPMD_ADDRESS=%s
# A frozen or cut-off peer is declared down after net_ticktime seconds
# (default 60). On the command line: RabbitMQ 3.10 starts the distribution
# before it applies advanced.config, so the net_ticktime there stays unused.
SERVER_ADDITIONAL_ERL_ARGS="-kernel net_ticktime %d"
`, NodeName(n), c.Spec.RabbitMQ.DistPort, n.Address, int(c.Spec.RabbitMQ.NetTickTime.Seconds()))
}

func rabbitConf(c *spec.Cluster, n spec.Node) string {
	r := c.Spec.RabbitMQ
	var b strings.Builder
	b.WriteString(engine.Header("#", c, n))
	fmt.Fprintf(&b, `
cluster_name = %s

# AMQP and the management API on the management address only.
listeners.tcp.1 = %s:%d
management.tcp.ip = %s
management.tcp.port = %d

# Every controller is listed, so a node forms or rejoins the cluster by
# itself after a restart.
cluster_formation.peer_discovery_backend = classic_config
`, c.Metadata.Name, n.Address, r.Port, n.Address, r.ManagementPort)
	for i, o := range c.Controllers() {
		fmt.Fprintf(&b, "cluster_formation.classic_config.nodes.%d = %s\n", i+1, NodeName(o))
	}
	fmt.Fprintf(&b, "\n%s\ncluster_partition_handling = %s\n", partitionComment(r.PartitionHandling, len(c.Controllers())), r.PartitionHandling)
	b.WriteString(`
# Users, vhost, permissions and policies come from the definitions file at
# boot. With definitions imported, the default guest user is never created.
load_definitions = ` + DefinitionsPath + "\n")
	return b.String()
}

func partitionComment(mode string, n int) string {
	switch mode {
	case spec.PartitionPauseMinority:
		return fmt.Sprintf("# The side of a partition without a majority of the %d nodes pauses instead of\n# diverging; it resumes by itself when the partition heals.", n)
	case spec.PartitionAutoheal:
		return "# With 2 nodes there is no majority to keep, so after a partition the side\n# with fewer clients restarts and rejoins (pause_minority would pause both)."
	default:
		return "# No automatic partition handling: after a partition an operator must\n# restart one side."
	}
}

func advancedConfig(c *spec.Cluster, n spec.Node) string {
	a := netip.MustParseAddr(n.Address).As4()
	return engine.Header("%%", c, n) + fmt.Sprintf(`[
  {kernel, [
    %%%% A frozen or cut-off node is declared down after net_ticktime seconds
    %%%% (default 60). Until then queue declarations wait for it and clients
    %%%% stall, so this is set together with the clients' heartbeat timings.
    {net_ticktime, %d},
    %%%% Erlang distribution on the management address only.
    {inet_dist_use_interface, {%d,%d,%d,%d}}
  ]}
].
`, int(c.Spec.RabbitMQ.NetTickTime.Seconds()), a[0], a[1], a[2], a[3])
}

type definitions struct {
	Users       []user       `json:"users"`
	VHosts      []vhost      `json:"vhosts"`
	Permissions []permission `json:"permissions"`
	Policies    []policy     `json:"policies"`
	Parameters  []any        `json:"parameters"`
	Queues      []any        `json:"queues"`
	Exchanges   []any        `json:"exchanges"`
	Bindings    []any        `json:"bindings"`
}

type user struct {
	Name         string   `json:"name"`
	PasswordHash string   `json:"password_hash"`
	Algorithm    string   `json:"hashing_algorithm"`
	Tags         []string `json:"tags"`
}

type vhost struct {
	Name string `json:"name"`
}

type permission struct {
	User      string `json:"user"`
	VHost     string `json:"vhost"`
	Configure string `json:"configure"`
	Write     string `json:"write"`
	Read      string `json:"read"`
}

type policy struct {
	VHost      string         `json:"vhost"`
	Name       string         `json:"name"`
	Pattern    string         `json:"pattern"`
	ApplyTo    string         `json:"apply-to"`
	Priority   int            `json:"priority"`
	Definition map[string]any `json:"definition"`
}

// MirroredPattern matches the queues worth mirroring: not the broker's own
// (amq.*), and not oslo.messaging's per-process fanout and reply queues,
// which are transient and would only cost replication traffic.
const MirroredPattern = `^(?!(amq\.)|(.*_fanout_)|(reply_)).*`

// Definitions is the definitions file imported at boot.
func Definitions(c *spec.Cluster, s secrets.Source) ([]byte, error) {
	r := c.Spec.RabbitMQ
	d := definitions{
		Users: []user{
			newUser(AdminUser, s.Get(secrets.RabbitAdminPassword), "administrator"),
			newUser(r.User, s.Get(secrets.RabbitServicePassword)),
		},
		VHosts: []vhost{{Name: r.VHost}},
		Permissions: []permission{
			{User: AdminUser, VHost: r.VHost, Configure: ".*", Write: ".*", Read: ".*"},
			{User: r.User, VHost: r.VHost, Configure: ".*", Write: ".*", Read: ".*"},
		},
		Policies:   []policy{},
		Parameters: []any{}, Queues: []any{}, Exchanges: []any{}, Bindings: []any{},
	}
	if r.QueueType == spec.QueueMirrored {
		d.Policies = append(d.Policies, policy{
			VHost: r.VHost, Name: MirroredPolicy, Pattern: MirroredPattern, ApplyTo: "queues",
			Definition: map[string]any{
				"ha-mode":      "all",
				"ha-sync-mode": "automatic",
				// Never promote an unsynchronised mirror: "always" would lose
				// the messages it had not received yet.
				"ha-promote-on-failure":  "when-synced",
				"ha-promote-on-shutdown": "when-synced",
			},
		})
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func newUser(name, password string, tags ...string) user {
	if tags == nil {
		tags = []string{}
	}
	return user{Name: name, PasswordHash: PasswordHash(name, password), Algorithm: "rabbit_password_hashing_sha256", Tags: tags}
}

// PasswordHash is RabbitMQ's salted SHA-256 password hash:
// base64(salt ++ sha256(salt ++ password)). The 4-byte salt is derived from
// the user and password, so the same secrets always render the same file
// and a second 'up' sees nothing to change.
func PasswordHash(userName, password string) string {
	seed := sha256.Sum256([]byte("hastack-rabbitmq-salt\x00" + userName + "\x00" + password))
	salt := seed[:4]
	h := sha256.Sum256(append(append([]byte{}, salt...), password...))
	return base64.StdEncoding.EncodeToString(append(append([]byte{}, salt...), h[:]...))
}
