// Package openstack is the OpenStack side of the shared layer: the settings
// each service (nova, cinder, neutron, ceilometer, keystone) needs to use
// RabbitMQ, the database endpoint and memcached so that the loss of one
// controller costs seconds, not minutes; the option names each supported
// release reads; and a linter that finds the HA mistakes in existing
// service configs.
package openstack

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// Dir is the folder of the rendered service configs under render's --out.
const Dir = "openstack"

// service is what one OpenStack service needs from the layer.
type service struct {
	name string
	// databases maps config sections to database names ([database] nova,
	// [api_database] nova_api); empty for services without SQL. A database
	// with no section is one the service derives from another: nova-manage
	// cell_v2 map_cell0 names nova_cell0 after [database] connection.
	databases [][2]string
	// notifies: the service emits notifications that ceilometer consumes.
	notifies bool
	// consumes: the service consumes notifications (ceilometer).
	consumes bool
	// authtoken: the service validates tokens with keystonemiddleware.
	authtoken bool
}

// Services are the services the source document names (Compute, Block
// Storage, Networking, Telemetry) and keystone, which caches in memcached.
var services = []service{
	{name: "nova", databases: [][2]string{{"database", "nova"}, {"api_database", "nova_api"}, {"", "nova_cell0"}}, notifies: true, authtoken: true},
	{name: "cinder", databases: [][2]string{{"database", "cinder"}}, notifies: true, authtoken: true},
	{name: "neutron", databases: [][2]string{{"database", "neutron"}}, notifies: true, authtoken: true},
	{name: "ceilometer", consumes: true},
	{name: "keystone", databases: [][2]string{{"database", "keystone"}}, notifies: true},
}

// ServiceNames lists the services rendered, in order.
func ServiceNames() []string {
	out := make([]string, len(services))
	for i, s := range services {
		out[i] = s.name
	}
	return out
}

// DatabasePasswordSecret names the secret holding a service's database
// password. 'up' creates the service's databases and its user with it
// (galera.ServiceDatabasesPhase).
func DatabasePasswordSecret(svc string) string { return "database/" + svc }

// MemcacheSecretKey names the secret keystonemiddleware encrypts and signs
// the tokens it caches in memcached with; every service shares it.
const MemcacheSecretKey = "openstack/memcache-secret-key"

// Database is one database a service's rendered config refers to, and
// the user it connects as.
type Database struct {
	Service string // the service, which is also its database user
	Section string // [database] or [api_database]; "" for nova_cell0, which nova derives from [database]
	Name    string // the database
}

// Databases lists every database the rendered configs refer to, in order.
func Databases() []Database {
	var out []Database
	for _, s := range services {
		for _, d := range s.databases {
			out = append(out, Database{Service: s.name, Section: d[0], Name: d[1]})
		}
	}
	return out
}

// Failover timings hastack writes, in one place.
const (
	retryInterval  = 1   // s before the first reconnection attempt
	reconnectDelay = 0.1 // s, kombu_reconnect_delay
	retryBackoff   = 1   // s added per failed attempt
	intervalMax    = 10  // s, the longest wait between attempts
	heartbeatRate  = 3
	// recycleTime stays below the endpoint's HAProxy 'timeout client' and
	// 'timeout server' (3600 s), which cut a connection idle that long.
	recycleTime     = 3000
	dbRetryInterval = 2
	// authtokenTimeout: keystonemiddleware reads its socket timeout as whole
	// seconds, so 1 s is the least it can wait.
	authtokenTimeout = 1
)

// CacheBackend is the [cache] backend rendered: see cacheSection.
const CacheBackend = "oslo_cache.memcache_pool"

// HeartbeatThreshold is the heartbeat_timeout_threshold written for a
// cluster: its spec.rabbitmq.clientHeartbeat, in seconds.
func HeartbeatThreshold(c *spec.Cluster) int {
	return int(c.Spec.RabbitMQ.ClientHeartbeat.Seconds())
}

// Render returns one config per service, at openstack/<service>.conf. The
// files hold passwords, so they are secret files (mode 0600).
func Render(c *spec.Cluster, s secrets.Source) ([]engine.File, error) {
	if _, ok := catalogFor(c.Spec.OpenStack.Release); !ok {
		return nil, fmt.Errorf("openstack release %q: hastack knows %s", c.Spec.OpenStack.Release, strings.Join(spec.OpenStackReleases, ", "))
	}
	if len(c.Controllers()) == 0 {
		return nil, fmt.Errorf("no controllers: nothing to point the services at")
	}
	var out []engine.File
	for _, svc := range services {
		out = append(out, engine.SecretFile(Dir+"/"+svc.name+".conf", "", []byte(renderService(c, s, svc))))
	}
	return out, nil
}

// WriteFiles writes the rendered configs under dir (DIR/openstack/...).
func WriteFiles(dir string, files []engine.File) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := secrets.WriteFileAtomic(p, f.Content, f.Mode); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	return nil
}

// TransportURL lists every RabbitMQ node, as the service user.
func TransportURL(c *spec.Cluster, s secrets.Source) string {
	r := c.Spec.RabbitMQ
	user := url.UserPassword(r.User, s.Get(secrets.RabbitServicePassword)).String()
	var hosts []string
	for _, n := range c.Controllers() {
		hosts = append(hosts, user+"@"+net.JoinHostPort(n.Address, strconv.Itoa(r.Port)))
	}
	return "rabbit://" + strings.Join(hosts, ",") + "/" + vhostPath(r.VHost)
}

// vhostPath is the vhost as the path of a transport URL: the default vhost
// "/" is the empty path; a name with a slash has it escaped.
func vhostPath(v string) string {
	if v == "/" {
		return ""
	}
	return strings.ReplaceAll(url.PathEscape(v), "/", "%2F")
}

// MemcachedServers lists every controller's memcached, host:port.
func MemcachedServers(c *spec.Cluster) []string {
	var out []string
	for _, n := range c.Controllers() {
		out = append(out, net.JoinHostPort(n.Address, strconv.Itoa(c.Spec.Memcached.Port)))
	}
	return out
}

// DatabaseURL is a service's SQLAlchemy URL through the database endpoint.
func DatabaseURL(c *spec.Cluster, s secrets.Source, user, db string) string {
	e := c.Spec.Database.Endpoint
	u := url.URL{
		Scheme:   "mysql+pymysql",
		User:     url.UserPassword(user, s.Get(DatabasePasswordSecret(user))),
		Host:     net.JoinHostPort(e.VIP, strconv.Itoa(e.Port)),
		Path:     "/" + db,
		RawQuery: "charset=utf8",
	}
	return u.String()
}

func renderService(c *spec.Cluster, s secrets.Source, svc service) string {
	release := c.Spec.OpenStack.Release
	r := c.Spec.RabbitMQ
	var f iniFile
	f.comment(fmt.Sprintf(`Rendered by hastack for cluster %s: what %s needs from the shared HA layer
(RabbitMQ, the database endpoint, memcached). Option names of OpenStack %s
(%s).
Merge these sections into /etc/%s/%s.conf; the service's other settings are yours.
It holds passwords: keep it readable by the %s service user only.
Check a merged file with: hastack lint -f <spec> /etc/%s/%s.conf`,
		c.Metadata.Name, svc.name, release, Libraries[release], svc.name, svc.name, svc.name, svc.name, svc.name))
	f.b.WriteString("\n")

	f.section("DEFAULT", "")
	f.set("transport_url", TransportURL(c, s), fmt.Sprintf(
		`Every RabbitMQ node (%d), as the source document asks: when the node a
connection uses fails, oslo.messaging reconnects to the next one. It shuffles
the list in each process, so connections are spread over the cluster.`, len(c.Controllers())))

	f.section("oslo_messaging_rabbit", "")
	f.set("rabbit_retry_interval", strconv.Itoa(retryInterval), fmt.Sprintf(
		`Reconnect after %d s, then %d s more per failed attempt, never waiting more than
%d s (defaults 1 s, +2 s, 30 s). A dead node costs one failed attempt; the
next node answers at once. Up to 30 s between attempts only delays the
return to a node that is back, and shorter waits would turn a whole-cluster
outage into a reconnection storm from every worker.`, retryInterval, retryBackoff, intervalMax))
	f.set("rabbit_retry_backoff", strconv.Itoa(retryBackoff), "")
	f.set("rabbit_interval_max", strconv.Itoa(intervalMax), "")
	f.set("kombu_reconnect_delay", strconv.FormatFloat(reconnectDelay, 'f', -1, 64),
		`oslo.messaging sleeps this long on every pass of a connection's recovery loop
(not only after a consumer cancel, as its help says), and a listener whose
broker died makes several passes before it moves to another node. Measured
on the lab (oslo.messaging 14.0.3, 3 nodes, broker killed): with the default
1.0, no RPC call answered for 8-13 s; with 0.1, for under 1 s. 0.1 keeps the
short pause the loop was given against a kombu hang on release.`)
	f.set("kombu_failover_strategy", "round-robin",
		`The library default, written because it matters: after a failure the next
attempt goes to the next node of the list, never the same dead node again
('shuffle' may pick it twice in a row).`)
	hb := HeartbeatThreshold(c)
	f.set("heartbeat_timeout_threshold", strconv.Itoa(hb), fmt.Sprintf(
		`A broker that is frozen or cut off (no TCP reset arrives) is given up after
two heartbeat intervals without a frame: %d s here (spec.rabbitmq.clientHeartbeat),
120 s with the default 60. The other brokers drop such a node after the
cluster's net_ticktime (%s), so a client that reconnects finds a cluster that
no longer waits for the lost node. The cost: a service whose eventlet hub is
blocked for %d s misses its own heartbeats and reconnects.`, 2*hb, r.NetTickTime.Duration, 2*hb))
	f.set("heartbeat_rate", strconv.Itoa(heartbeatRate), fmt.Sprintf(
		`The heartbeat thread wakes every threshold/rate/2 s (%.1f s here), so a
heartbeat frame is never sent late.%s`, float64(hb)/heartbeatRate/2, map[bool]string{true: " zed's default is 2; later releases made it 3.", false: ""}[release == Zed]))
	switch r.QueueType {
	case spec.QueueQuorum:
		f.set("rabbit_quorum_queue", "true",
			`The cluster's queue type is quorum: queues are replicated by Raft and
survive the loss of a minority of nodes. Quorum queues are always durable
(amqp_durable_queues does not apply). Every service on this bus must agree:
a queue declared with another type by one service is refused to the others
(PRECONDITION_FAILED). rabbit_ha_queues stays off: together they stop the
service at its first queue declaration.`)
	case spec.QueueMirrored:
		f.set("amqp_durable_queues", "true",
			`The cluster mirrors classic queues with hastack's 'ha-mirrored' policy
(every node, except reply and fanout queues). Durable queues and exchanges
also survive a restart of the whole cluster. Changing it on a running cloud
needs the old queues deleted first (PRECONDITION_FAILED otherwise).
rabbit_ha_queues stays off: it only adds the x-ha-policy argument that
RabbitMQ ignores since 3.0 (the policy does the mirroring), and
rabbit_quorum_queue stays off: the two cannot be combined.`)
	}

	switch {
	case svc.notifies:
		f.section("oslo_messaging_notifications", `This service emits notifications; ceilometer's notification agent consumes
them from the same bus (transport_url of [DEFAULT] is used). Without a
consumer they pile up in the broker's memory: where no ceilometer runs,
write driver = noop instead.`)
		f.set("driver", "messagingv2", "")
		f.set("topics", "notifications", "The topic ceilometer listens on (the default, written to pair with it).")
	case svc.consumes:
		f.note(`No [oslo_messaging_notifications]: ceilometer consumes notifications (its
notification agent declares the queues, with the queue settings above, which
must match those of the services that emit).`)
	}

	for _, d := range svc.databases {
		if d[0] == "" {
			continue
		}
		f.section(d[0], "")
		f.set("connection", DatabaseURL(c, s, svc.name, d[1]), fmt.Sprintf(
			`Through the database endpoint (%s, keepalived + HAProxy), never one
controller: HAProxy sends every write to one Synced Galera node and moves
to another when it fails. The password is the secret %s of the
cluster's secrets file; 'hastack up' creates the database and the user with
it, granted this service's databases only, from the management network.`,
			c.Spec.Database.Endpoint.VIP, DatabasePasswordSecret(svc.name)))
		f.set("connection_recycle_time", strconv.Itoa(recycleTime), fmt.Sprintf(
			`Below HAProxy's 3600 s 'timeout client/server' (the default %d equals it): a
pooled connection is replaced before HAProxy cuts it, instead of failing the
next request with "MySQL server has gone away".`, 3600))
		f.set("max_retries", "-1", fmt.Sprintf(
			`A service started while the endpoint is moving keeps trying every %d s
instead of exiting after 10 tries 10 s apart (defaults 10 and 10 s).`, dbRetryInterval))
		f.set("retry_interval", strconv.Itoa(dbRetryInterval), "")
	}

	cacheSection(&f, c, release)

	if svc.authtoken {
		f.section("keystone_authtoken", `Token validation caches in memcached through python-memcached (keystonemiddleware
offers no other client): it hashes mod N, but keeps the server list fixed.`)
		f.set("memcached_servers", strings.Join(MemcachedServers(c), ","), "Every controller's memcached.")
		m := c.Spec.Memcached
		timeout := max(authtokenTimeout, int(math.Ceil(m.ClientTimeout.Seconds())))
		dead := int(m.ClientDeadRetry.Seconds())
		f.set("memcache_pool_socket_timeout", strconv.Itoa(timeout), fmt.Sprintf(
			`Every API request validates its token here: a frozen or unreachable memcached
stalls a request %d s at most, then is skipped (default 3 s). keystonemiddleware
reads whole seconds, so 1 s is its least (the [cache] section waits less).`, timeout))
		f.set("memcache_pool_dead_retry", strconv.Itoa(dead), fmt.Sprintf(
			`A dead memcached is retried after %d s (spec.memcached.clientDeadRetry; default
300 s): a restarted one takes its share of the tokens back within that, and a
still-dead one costs one stalled request per %d s and pooled connection.`, dead, dead))
		f.set("memcache_security_strategy", "ENCRYPT",
			`Without it, every validated token and its data sit in memcached in plain
text, readable and writable by anyone who reaches the management network
(memcached has no authentication): a token can be read, or a forged
validation written. ENCRYPT encrypts and signs each entry (MAC would only
sign it).`)
		f.set("memcache_secret_key", s.Get(MemcacheSecretKey), fmt.Sprintf(
			`The key the entries are encrypted and signed with: the secret %s of
the cluster's secrets file, the same for every service, so services that
validate the same token share the cache entry.`, MemcacheSecretKey))
	}
	return f.b.String()
}

func cacheSection(f *iniFile, c *spec.Cluster, release string) {
	m := c.Spec.Memcached
	timeout := strconv.FormatFloat(m.ClientTimeout.Seconds(), 'f', -1, 64)
	dead := int(m.ClientDeadRetry.Seconds())
	f.section("cache", "")
	f.set("enabled", "true", "Caching is off by default.")
	f.set("backend", CacheBackend,
		`oslo.cache's pool of python-memcached clients: the one backend of these
releases whose calls have a socket timeout. dogpile.cache.pymemcache
(consistent hashing) gets none through dogpile, so a memcached that hangs or
vanishes (no TCP reset) blocks calls for minutes (measured 42-153 s). The cost:
python-memcached hashes keys mod N, so changing memcache_servers (a
controller added or removed for good) moves ~(N-1)/N of the keys at once;
a memcached that is merely dead only has its own keys moved meanwhile.`)
	f.set("memcache_servers", strings.Join(MemcachedServers(c), ","), "Every controller's memcached.")
	timeoutKey := "memcache_socket_timeout"
	if release != Zed {
		timeoutKey = "socket_timeout"
	}
	f.set(timeoutKey, timeout, fmt.Sprintf(
		`A memcached that does not answer within %s s is taken for dead and its keys
go to the others (spec.memcached.clientTimeout; default 3 s): a frozen or
cut-off controller costs one call %s s, then nothing, until it is tried again.`, timeout, timeout))
	f.set("memcache_dead_retry", strconv.Itoa(dead), fmt.Sprintf(
		`A memcached taken for dead is tried again after %d s (spec.memcached.clientDeadRetry;
default 300 s): one that is back serves its keys again within that, and one
still gone costs one timed-out call per pooled client every %d s.`, dead, dead))
	f.set("memcache_pool_connection_get_timeout", "1",
		`A request waits at most 1 s for a free pooled client (default 10 s).`)
}
