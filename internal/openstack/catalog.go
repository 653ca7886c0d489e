package openstack

import (
	"sort"
	"strings"
)

// Releases whose option names hastack knows, with the libraries they were
// read from. zed is the release whose libraries Debian 12 ships; the
// integration test compares its catalogue with those libraries' own option
// definitions. 2026.1 (Gazpacho) was read from the upstream sources and
// release notes (oslo.messaging 17.3, oslo.cache after the hashclient and
// generic-name renames, oslo.db with mysql_wsrep_sync_wait).
const (
	Zed      = "zed"
	Gazpacho = "2026.1"
)

// Libraries names the library versions a release's catalogue describes.
var Libraries = map[string]string{
	Zed:      "oslo.messaging 14.0.3, oslo.cache 3.2.0, oslo.db 12.1.0, keystonemiddleware 10.1.0 (Debian 12)",
	Gazpacho: "oslo.messaging 17.3, oslo.cache and oslo.db of the 2026.1 series",
}

// status of an option name in a release.
type status int

const (
	known      status = iota
	deprecated        // still read; Use names the replacement, if any
	removed           // no longer read: the setting is silently ignored
)

// option is what a release says about one option name of a group.
type option struct {
	status status
	// use is the name to write instead (deprecated or removed names), in
	// the same group unless it contains "]".
	use string
	// note explains a deprecation or removal, or why a known option has no
	// effect in this release.
	note string
}

// group is the catalogue of one config group. complete means every option
// the release reads there is listed, so any other name is a mistake; for
// groups that also hold the service's own options ([DEFAULT]) or plugin
// options ([keystone_authtoken]) only near misses of listed names are.
type group struct {
	complete bool
	opts     map[string]option
}

// catalog is what hastack knows about one release's option names.
type catalog struct {
	release string
	groups  map[string]*group
	// removedSections are sections the release no longer reads.
	removedSections map[string]string
	// cacheBackends are the values [cache] backend accepts.
	cacheBackends []string
}

func catalogFor(release string) (*catalog, bool) {
	switch release {
	case Zed:
		return zedCatalog(), true
	case Gazpacho:
		return gazpachoCatalog(), true
	}
	return nil, false
}

// names returns the sorted option names a group accepts (known or
// deprecated), for messages and tests.
func (g *group) names() []string {
	var out []string
	for n, o := range g.opts {
		if o.status != removed {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func newGroup(complete bool, names string) *group {
	g := &group{complete: complete, opts: map[string]option{}}
	for _, n := range strings.Fields(names) {
		g.opts[n] = option{status: known}
	}
	return g
}

func (g *group) deprecate(name, use, note string) {
	g.opts[name] = option{status: deprecated, use: use, note: note}
}

func (g *group) remove(name, use, note string) {
	g.opts[name] = option{status: removed, use: use, note: note}
}

func (g *group) knownWithNote(name, note string) {
	g.opts[name] = option{status: known, note: note}
}

// Options both releases read in [oslo_messaging_rabbit].
const rabbitCommon = `amqp_durable_queues amqp_auto_delete rpc_conn_pool_size conn_pool_min_size conn_pool_ttl
ssl ssl_version ssl_key_file ssl_cert_file ssl_ca_file ssl_enforce_hostname_verification ssl_enforce_fips_mode
heartbeat_in_pthread kombu_reconnect_delay kombu_compression kombu_missing_consumer_retry_timeout
kombu_failover_strategy rabbit_login_method rabbit_retry_interval rabbit_retry_backoff rabbit_interval_max
rabbit_ha_queues rabbit_quorum_queue rabbit_quorum_delivery_limit rabbit_transient_queues_ttl
rabbit_qos_prefetch_count heartbeat_timeout_threshold heartbeat_rate direct_mandatory_flag enable_cancel_on_failover`

const databaseCommon = `sqlite_synchronous backend connection slave_connection mysql_sql_mode mysql_enable_ndb
connection_recycle_time max_pool_size max_retries retry_interval max_overflow connection_debug connection_trace
pool_timeout use_db_reconnect db_retry_interval db_inc_retry_interval db_max_retry_interval db_max_retries
connection_parameters`

// keystonemiddleware's auth_token options and the password plugin's, which
// services write in the same section.
const authtokenNames = `www_authenticate_uri auth_uri auth_version interface delay_auth_decision http_connect_timeout
http_request_max_retries cache certfile keyfile cafile insecure region_name memcached_servers token_cache_time
memcache_security_strategy memcache_secret_key memcache_pool_dead_retry memcache_pool_maxsize
memcache_pool_socket_timeout memcache_pool_unused_timeout memcache_pool_conn_get_timeout memcache_use_advanced_pool
include_service_catalog enforce_token_bind service_token_roles service_token_roles_required service_type
auth_admin_prefix auth_host auth_port auth_protocol identity_uri admin_token admin_user admin_password
admin_tenant_name auth_type auth_section auth_url system_scope domain_id domain_name project_id project_name
project_domain_id project_domain_name trust_id default_domain_id default_domain_name user_id username
user_domain_id user_domain_name password`

const cacheCommon = `config_prefix expiration_time backend backend_argument proxies enabled debug_cache_backend
memcache_servers memcache_dead_retry memcache_pool_maxsize memcache_pool_unused_timeout
memcache_pool_connection_get_timeout memcache_pool_flush_on_reconnect memcache_sasl_enabled tls_enabled tls_cafile
tls_certfile tls_keyfile tls_allowed_ciphers enable_socket_keepalive socket_keepalive_idle socket_keepalive_interval
socket_keepalive_count enable_retry_client retry_attempts retry_delay hashclient_retry_attempts`

var cacheBackendsCommon = []string{
	"oslo_cache.memcache_pool", "oslo_cache.dict", "oslo_cache.etcd3gw", "dogpile.cache.pymemcache",
	"dogpile.cache.memcached", "dogpile.cache.pylibmc", "dogpile.cache.bmemcached", "dogpile.cache.dbm",
	"dogpile.cache.redis", "dogpile.cache.memory", "dogpile.cache.memory_pickle", "dogpile.cache.null",
}

// removedEverywhere are names that no release hastack knows reads.
func removeOldMessaging(def, rabbit *group) {
	const why = "removed long before zed; the broker list and credentials live in transport_url"
	for _, n := range strings.Fields("rabbit_host rabbit_hosts rabbit_port rabbit_userid rabbit_password rabbit_virtual_host") {
		rabbit.remove(n, "[DEFAULT] transport_url", why)
		def.remove(n, "[DEFAULT] transport_url", why)
	}
	rabbit.remove("rabbit_max_retries", "", "removed long before zed: oslo.messaging retries for ever")
	rabbit.remove("rabbit_durable_queues", "amqp_durable_queues", "removed long before zed")
	rabbit.remove("fake_rabbit", "", "removed long before zed")
	def.remove("rpc_backend", "transport_url", "removed long before zed: the transport is the scheme of transport_url")
}

func zedCatalog() *catalog {
	def := newGroup(false, "transport_url rpc_response_timeout control_exchange executor_thread_pool_size rpc_ping_enabled")
	def.deprecate("rpc_thread_pool_size", "executor_thread_pool_size", "deprecated name")
	def.deprecate("notification_driver", "[oslo_messaging_notifications] driver", "deprecated alias, removed in 2025.1")
	def.deprecate("notification_transport_url", "[oslo_messaging_notifications] transport_url", "deprecated alias, removed in 2025.1")
	def.deprecate("notification_topics", "[oslo_messaging_notifications] topics", "deprecated alias, removed in 2025.1")
	for _, n := range strings.Fields("amqp_auto_delete kombu_reconnect_delay rabbit_login_method rabbit_retry_backoff rabbit_ha_queues rpc_conn_pool_size amqp_durable_queues") {
		def.deprecate(n, "[oslo_messaging_rabbit] "+n, "still read from [DEFAULT] in zed, no longer from 2025.1")
	}

	rabbit := newGroup(true, rabbitCommon+" rabbit_quroum_max_memory_length rabbit_quroum_max_memory_bytes")
	rabbit.deprecate("direct_mandatory_flag", "", "deprecated for removal: the mandatory flag can no longer be turned off")
	rabbit.deprecate("rabbit_use_ssl", "ssl", "deprecated name")
	rabbit.deprecate("kombu_ssl_version", "ssl_version", "deprecated name")
	rabbit.deprecate("kombu_ssl_keyfile", "ssl_key_file", "deprecated name")
	rabbit.deprecate("kombu_ssl_certfile", "ssl_cert_file", "deprecated name")
	rabbit.deprecate("kombu_ssl_ca_certs", "ssl_ca_file", "deprecated name")
	rabbit.deprecate("kombu_reconnect_timeout", "kombu_missing_consumer_retry_timeout", "deprecated name")
	removeOldMessaging(def, rabbit)

	notif := newGroup(true, "driver transport_url topics retry")

	cache := newGroup(true, cacheCommon+" memcache_socket_timeout memcache_username memcache_password")
	ineffective := "no effect in zed: oslo.cache 3.2 hands it to dogpile.cache under a name dogpile.cache 1.1.8 does not read (the HashClient keeps its default); fixed later by the renames to hashclient_%s"
	cache.knownWithNote("hashclient_retry_delay", strings.Replace(ineffective, "%s", "retry_timeout", 1))
	cache.knownWithNote("dead_timeout", strings.Replace(ineffective, "%s", "dead_timeout", 1))

	db := newGroup(true, databaseCommon)
	deprecateDatabaseAliases(db)

	c := &catalog{
		release: Zed,
		groups: map[string]*group{
			"DEFAULT":                      def,
			"oslo_messaging_rabbit":        rabbit,
			"oslo_messaging_notifications": notif,
			"cache":                        cache,
			"database":                     db,
			"api_database":                 partialCopy(db),
			"keystone_authtoken":           authtokenGroup(),
		},
		removedSections: removedSections(),
		cacheBackends:   append([]string{"oslo_cache.mongo"}, cacheBackendsCommon...),
	}
	return c
}

func gazpachoCatalog() *catalog {
	def := newGroup(false, "transport_url rpc_response_timeout control_exchange executor_thread_pool_size rpc_ping_enabled")
	def.deprecate("rpc_thread_pool_size", "executor_thread_pool_size", "deprecated name")
	def.remove("notification_driver", "[oslo_messaging_notifications] driver", "removed in 2025.1")
	def.remove("notification_transport_url", "[oslo_messaging_notifications] transport_url", "removed in 2025.1")
	def.remove("notification_topics", "[oslo_messaging_notifications] topics", "removed in 2025.1")
	for _, n := range strings.Fields("amqp_auto_delete kombu_reconnect_delay rabbit_login_method rabbit_retry_backoff rabbit_ha_queues rpc_conn_pool_size") {
		def.remove(n, "[oslo_messaging_rabbit] "+n, "no longer read from [DEFAULT] since 2025.1")
	}

	rabbit := newGroup(true, rabbitCommon+` rabbit_quorum_max_memory_length rabbit_quorum_max_memory_bytes
kombu_reconnect_splay rabbit_transient_quorum_queue use_queue_manager hostname processname rabbit_stream_fanout`)
	rabbit.deprecate("direct_mandatory_flag", "", "deprecated for removal: the mandatory flag can no longer be turned off")
	rabbit.deprecate("heartbeat_in_pthread", "", "deprecated for removal (an eventlet-era option)")
	rabbit.deprecate("ssl_enforce_fips_mode", "", "deprecated for removal: it has no effect with OpenSSL 3")
	rabbit.deprecate("kombu_reconnect_timeout", "kombu_missing_consumer_retry_timeout", "deprecated name")
	for old, use := range map[string]string{"rabbit_use_ssl": "ssl", "kombu_ssl_version": "ssl_version", "kombu_ssl_keyfile": "ssl_key_file", "kombu_ssl_certfile": "ssl_cert_file", "kombu_ssl_ca_certs": "ssl_ca_file"} {
		rabbit.remove(old, use, "removed in 2025.1")
	}
	rabbit.remove("rabbit_quroum_max_memory_length", "rabbit_quorum_max_memory_length", "the misspelt name was removed in 2025.2")
	rabbit.remove("rabbit_quroum_max_memory_bytes", "rabbit_quorum_max_memory_bytes", "the misspelt name was removed in 2025.2")
	removeOldMessaging(def, rabbit)

	notif := newGroup(true, "driver transport_url topics retry")

	cache := newGroup(true, cacheCommon+` backend_expiration_time redis_server redis_db redis_sentinels
redis_sentinel_service_name username password socket_timeout hashclient_retry_timeout hashclient_dead_timeout enforce_fips_mode`)
	cache.deprecate("memcache_socket_timeout", "socket_timeout", "deprecated name")
	cache.deprecate("redis_socket_timeout", "socket_timeout", "deprecated name")
	cache.deprecate("memcache_username", "username", "deprecated name")
	cache.deprecate("redis_username", "username", "deprecated name")
	cache.deprecate("memcache_password", "password", "deprecated name")
	cache.deprecate("redis_password", "password", "deprecated name")
	cache.deprecate("hashclient_retry_delay", "hashclient_retry_timeout", "deprecated name")
	cache.deprecate("dead_timeout", "hashclient_dead_timeout", "deprecated name")
	cache.opts["enforce_fips_mode"] = option{status: deprecated, note: "deprecated for removal: it has no effect with OpenSSL 3"}

	db := newGroup(true, databaseCommon+" mysql_wsrep_sync_wait")
	db.deprecate("mysql_enable_ndb", "", "deprecated for removal: NDB Cluster support goes away")
	deprecateDatabaseAliases(db)

	return &catalog{
		release: Gazpacho,
		groups: map[string]*group{
			"DEFAULT":                      def,
			"oslo_messaging_rabbit":        rabbit,
			"oslo_messaging_notifications": notif,
			"cache":                        cache,
			"database":                     db,
			"api_database":                 partialCopy(db),
			"keystone_authtoken":           authtokenGroup(),
		},
		removedSections: func() map[string]string {
			m := removedSections()
			m["oslo_messaging_amqp"] = "the AMQP 1.0 driver was removed in 2025.1"
			return m
		}(),
		cacheBackends: append(append([]string{}, cacheBackendsCommon...), "dogpile.cache.redis_sentinel"),
	}
}

func deprecateDatabaseAliases(db *group) {
	db.deprecate("sql_connection", "connection", "deprecated name")
	db.deprecate("sql_max_retries", "max_retries", "deprecated name")
	db.deprecate("reconnect_interval", "retry_interval", "deprecated name")
	db.deprecate("sqlalchemy_max_overflow", "max_overflow", "deprecated name")
	db.deprecate("sqlalchemy_pool_timeout", "pool_timeout", "deprecated name")
	db.remove("idle_timeout", "connection_recycle_time", "removed long before zed")
	db.remove("min_pool_size", "", "removed long before zed")
	db.remove("use_tpool", "", "removed in 2024.2")
}

// partialCopy is the catalogue of a group that takes the same options as
// g but registers only some of them (nova's [api_database]).
func partialCopy(g *group) *group {
	out := &group{complete: false, opts: map[string]option{}}
	for k, v := range g.opts {
		out.opts[k] = v
	}
	return out
}

func authtokenGroup() *group {
	g := newGroup(false, authtokenNames)
	g.deprecate("memcache_servers", "memcached_servers", "deprecated alias")
	g.deprecate("auth_plugin", "auth_type", "deprecated alias")
	g.opts["auth_uri"] = option{status: deprecated, use: "www_authenticate_uri", note: "deprecated for removal"}
	return g
}

func removedSections() map[string]string {
	return map[string]string{
		"oslo_messaging_zmq":  "the ZeroMQ driver was removed in Stein",
		"matchmaker_redis":    "the ZeroMQ driver and its matchmaker were removed in Stein",
		"oslo_messaging_qpid": "the Qpid driver was removed in Mitaka",
		"oslo_messaging_pika": "the Pika driver was removed in Stein",
	}
}
