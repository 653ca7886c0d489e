// Package galera runs the MariaDB Galera cluster on the controllers:
// synchronous replication, no acknowledged write lost, one node bootstrapped
// and the others joined, and full-cluster recovery that never picks a stale
// node.
package galera

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// ConfigPath sorts after Debian's own 50-server.cnf and 60-galera.cnf, so its
// settings win.
const ConfigPath = "/etc/mysql/mariadb.conf.d/99-hastack.cnf"

// Paths and the user of Debian's MariaDB packages.
const (
	User         = "mysql"
	DataDir      = "/var/lib/mysql"
	Socket       = "/run/mysqld/mysqld.sock"
	ProviderPath = "/usr/lib/galera/libgalera_smm.so"
)

// Renderer renders the MariaDB Galera settings for controllers.
type Renderer struct{}

// Name implements engine.Renderer.
func (Renderer) Name() string { return "galera" }

// ClusterAddress is the gcomm:// URL listing every controller.
func ClusterAddress(c *spec.Cluster) string {
	var addrs []string
	for _, n := range c.Controllers() {
		addrs = append(addrs, fmt.Sprintf("%s:%d", n.Address, spec.GaleraReplicationPort))
	}
	return "gcomm://" + strings.Join(addrs, ",")
}

// Files implements engine.Renderer.
func (Renderer) Files(c *spec.Cluster, n spec.Node, _ secrets.Source) ([]engine.File, error) {
	if !n.IsController() {
		return nil, nil
	}
	d := c.Spec.Database
	provider := []string{
		"gcache.size=" + d.GCacheSize,
		"gcache.recover=yes",
		fmt.Sprintf("gmcast.listen_addr=tcp://%s:%d", n.Address, spec.GaleraReplicationPort),
		fmt.Sprintf("ist.recv_addr=%s:%d", n.Address, spec.GaleraISTPort),
	}
	provider = append(provider, failureDetection(d)...)
	s := engine.Header("#", c, n) + fmt.Sprintf(`
# MariaDB Galera: one database instance on every controller, replicated
# synchronously (source document: highly available database).

[mysqld]
# Every address on the management network only.
bind-address = %[1]s
port = %[2]d
socket = %[3]s
datadir = %[4]s

# Galera replicates row events only; statement-based binlogs would diverge.
binlog_format = ROW
default_storage_engine = InnoDB
# Interleaved auto-increment locks: required by Galera's parallel appliers.
innodb_autoinc_lock_mode = 2
# Flush the log at every commit: if every node crashes at once (a power cut),
# no acknowledged write may be lost, and recovery picks the most advanced node.
innodb_flush_log_at_trx_commit = 1
# OpenStack services hold pooled connections per worker (default 151).
max_connections = %[5]d
# No DNS lookups on connect: a slow resolver must not stall logins.
skip_name_resolve = ON

wsrep_on = ON
wsrep_provider = %[6]s
wsrep_cluster_name = %[7]s
# Every controller, so a restarted node finds the cluster through any of them.
wsrep_cluster_address = %[8]s
wsrep_node_name = %[9]s
wsrep_node_address = %[1]s
# mariabackup keeps the donor serving during a full transfer (rsync blocks it).
# It authenticates over the local socket as the OS user mysql (unix_socket),
# so no SST password is stored anywhere.
wsrep_sst_method = %[10]s
wsrep_sst_receive_address = %[1]s:%[11]d
# Donor preference for a full (SST) or incremental (IST) transfer: the other
# controllers, the one HAProxy sends writes to ('balance first': the first
# in spec order) last, so a rejoining or rebuilt node does not load the
# writer; the trailing comma lets any node serve when none of these can.
wsrep_sst_donor = "%[15]s"
# gcache.size: large enough that a node down for a while rejoins by
# incremental transfer (IST) instead of copying the whole database.
# gcache.recover: keep the gcache across restarts, so after a full-cluster
# restart the others can still rejoin by IST.
# listen_addr / recv_addr: replication on the management address only.
# evs.*: how soon a node that hangs or vanishes (no TCP reset) is dropped, so
# that commits on the others go on. Every commit waits until then. Galera's
# defaults (keepalive 1 s, suspect 5 s, inactive 15 s) cost about 6 s of
# writes; spec.database.keepalivePeriod and suspectTimeout set them here:
# keepalive %[13]s, suspect %[14]s; inactive (a node dropped even if some
# member still hears it) twice the suspect timeout; install (a new view must
# be agreed within it) the same, so a view change cannot outlast it.
wsrep_provider_options = "%[12]s"
`, n.Address, d.Port, Socket, DataDir, d.MaxConnections, ProviderPath, d.ClusterName,
		ClusterAddress(c), n.Name, d.SSTMethod, spec.GaleraSSTPort, strings.Join(provider, ";"),
		d.KeepalivePeriod.Duration, d.SuspectTimeout.Duration, donors(c, n))
	return []engine.File{engine.Config(ConfigPath, s)}, nil
}

// donors is wsrep_sst_donor for node n: every other controller, in reverse
// spec order (the writer, the first controller, last), and a trailing comma
// (any other node when none of them can serve).
func donors(c *spec.Cluster, n spec.Node) string {
	var out []string
	ctls := c.Controllers()
	for i := len(ctls) - 1; i >= 0; i-- {
		if ctls[i].Name != n.Name {
			out = append(out, ctls[i].Name)
		}
	}
	if len(out) == 0 {
		return "" // a single controller: nobody to prefer
	}
	return strings.Join(out, ",") + ","
}

// failureDetection are the evs.* provider options for the spec's keepalive
// period and suspect timeout.
func failureDetection(d spec.Database) []string {
	ka, su := d.KeepalivePeriod.Duration, d.SuspectTimeout.Duration
	check := min(ka, 500*time.Millisecond)
	return []string{
		"evs.keepalive_period=" + iso8601(ka),
		"evs.suspect_timeout=" + iso8601(su),
		"evs.inactive_timeout=" + iso8601(2*su),
		"evs.install_timeout=" + iso8601(2*su),
		"evs.inactive_check_period=" + iso8601(check),
	}
}

// iso8601 writes a duration as Galera reads it: PT1.5S.
func iso8601(d time.Duration) string {
	return "PT" + strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "S"
}
