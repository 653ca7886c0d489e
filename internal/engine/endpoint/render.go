// Package endpoint runs the one database address every service connects to:
// HAProxy on every controller sends all writes to a single Synced Galera
// node and fails over to the next, behind a keepalived virtual IP.
package endpoint

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// Paths of Debian's haproxy and keepalived packages, and the sysctl that
// lets HAProxy bind the VIP on controllers that do not hold it.
const (
	HAProxyPath    = "/etc/haproxy/haproxy.cfg"
	KeepalivedPath = "/etc/keepalived/keepalived.conf"
	SysctlPath     = "/etc/sysctl.d/60-hastack-endpoint.conf"
	AdminSocket    = "/run/haproxy/admin.sock"
	// Backend is the HAProxy proxy that carries database traffic.
	Backend = "galera"
)

// Renderer renders HAProxy, keepalived and the sysctl for controllers.
type Renderer struct{}

// Name implements engine.Renderer.
func (Renderer) Name() string { return "endpoint" }

// Files implements engine.Renderer.
func (Renderer) Files(c *spec.Cluster, n spec.Node, _ secrets.Source) ([]engine.File, error) {
	if !n.IsController() {
		return nil, nil
	}
	mgmt, ok := n.ManagementInterface()
	if !ok {
		return nil, fmt.Errorf("node %s has no management interface", n.Name)
	}
	return []engine.File{
		engine.Config(HAProxyPath, haproxyConfig(c, n)),
		engine.Config(KeepalivedPath, keepalivedConfig(c, n, mgmt.Name)),
		engine.Config(SysctlPath, engine.Header("#", c, n)+`
# HAProxy on every controller binds the database VIP, which only one of them
# holds at a time; the others must be allowed to bind it in advance so that
# a failover needs no restart.
net.ipv4.ip_nonlocal_bind = 1
`),
	}, nil
}

func haproxyConfig(c *spec.Cluster, n spec.Node) string {
	e := c.Spec.Database.Endpoint
	var b strings.Builder
	b.WriteString(engine.Header("#", c, n))
	fmt.Fprintf(&b, `
global
    maxconn %[1]d
    # The stats socket lets hastack ask which node takes writes now.
    stats socket %[2]s mode 600 level admin
    # Name of this HAProxy in the peers section below.
    localpeer %[3]s

defaults
    mode tcp
    # A controller on the management network answers a connect within
    # milliseconds; one that hangs or vanished never does. A client whose
    # connect to a dead server fails is sent to the next one (redispatch).
    timeout connect 1s
    retries 2
    option redispatch 1
    # Pooled database connections sit idle between requests; OpenStack
    # recycles them after an hour, so HAProxy must not cut them sooner.
    timeout client 3600s
    timeout server 3600s
    # A health check that has not answered within one check interval counts
    # as failed: a frozen node accepts the connection and never answers.
    timeout check %[4]s

# The controllers' HAProxies share which Galera node takes writes, so that a
# move of the VIP does not move the writes too.
peers hastack
`, c.Spec.Database.MaxConnections, AdminSocket, n.Name, haproxyDuration(e.CheckInterval.Duration))
	for _, o := range c.Controllers() {
		fmt.Fprintf(&b, "    peer %s %s:%d\n", o.Name, o.Address, e.PeersPort)
	}
	fmt.Fprintf(&b, `
listen %[1]s
    bind %[2]s:%[3]d
    # All writes to one node: writing to several Galera nodes at once turns
    # row conflicts into deadlock errors at commit. 'first' picks the first
    # healthy node; the stick table keeps writes there even after the failed
    # node comes back, so there is one switch per failure, not two.
    balance first
    stick-table type ip size 1 peers hastack
    stick on dst
    # Healthy means Synced and ready, asked of hastack's Galera health check
    # on each node; a node that is only up (joining, donor, non-Primary) would
    # refuse queries.
    option httpchk GET /
    http-check expect status 200
    # Checked every %[5]s (spec.database.endpoint.checkInterval), and at
    # twice that rate once a check has failed: two failures in a row mark a
    # node down, within about %[7]s of it hanging (HAProxy's defaults, 2 s
    # and 3 failures, take 6 s or more). A node marked down has its
    # connections cut at once, so clients reconnect to the new writer
    # instead of hanging on a dead one.
    default-server check port %[4]d inter %[5]s fastinter %[6]s downinter 1s fall 2 rise 3 on-marked-down shutdown-sessions
`, Backend, e.VIP, e.Port, e.CheckPort, haproxyDuration(e.CheckInterval.Duration), haproxyDuration(e.CheckInterval.Duration/2),
		e.CheckInterval.Duration*7/2)
	for _, o := range c.Controllers() {
		fmt.Fprintf(&b, "    server %s %s:%d\n", o.Name, o.Address, c.Spec.Database.Port)
	}
	fmt.Fprintf(&b, `
# Read-only statistics on the management address.
listen stats
    mode http
    bind %s:%d
    stats enable
    stats uri /
    stats refresh 5s
`, n.Address, e.StatsPort)
	return b.String()
}

func keepalivedConfig(c *spec.Cluster, n spec.Node, ifname string) string {
	e := c.Spec.Database.Endpoint
	mgmt, _ := c.Network(spec.ManagementNetwork)
	prefix := mgmt.CIDR[strings.IndexByte(mgmt.CIDR, '/'):]
	ctl := c.Controllers()
	priority := 150
	var peers []string
	for i, o := range ctl {
		if o.Name == n.Name {
			priority = 150 - 10*i
			continue
		}
		peers = append(peers, "        "+o.Address)
	}
	unicast := ""
	if len(peers) > 0 {
		unicast = fmt.Sprintf("    # Unicast to the other controllers: works on networks that filter multicast.\n"+
			"    unicast_src_ip %s\n    unicast_peer {\n%s\n    }\n", n.Address, strings.Join(peers, "\n"))
	}
	return engine.Header("#", c, n) + fmt.Sprintf(`
global_defs {
    router_id %[1]s
    enable_script_security
    script_user root
    # VRRPv3: advertisement intervals below a second (in centiseconds).
    vrrp_version 3
}

# The VIP follows a working HAProxy: a controller whose HAProxy is gone
# gives the address up within about 2 seconds.
vrrp_script haproxy_alive {
    script "/usr/bin/pgrep -x haproxy"
    interval 1
    fall 2
    rise 2
}

vrrp_instance database_vip {
    # Every controller starts as backup and none takes the VIP back after
    # recovering (nopreempt): one move per failure, not two.
    state BACKUP
    nopreempt
    interface %[2]s
    virtual_router_id %[3]d
    priority %[4]d
    # A backup takes the VIP after three adverts are missed plus a skew
    # (lower priorities wait longer): about %[8]s here
    # (spec.database.endpoint.advertInterval; keepalived's default, 1 s,
    # takes about 3.5 s).
    advert_int %[9]s
    # After a cut heals, two nodes held the VIP for a while and clients may
    # have learnt the wrong one's MAC address. The master announces the VIP
    # again every 5 s, and at once when it hears a node of lower priority
    # that still claims it, so stale ARP entries last seconds, not minutes.
    garp_master_refresh 5
    garp_lower_prio_repeat 1
%[5]s    virtual_ipaddress {
        %[6]s%[7]s dev %[2]s
    }
    track_script {
        haproxy_alive
    }
}
`, n.Name, ifname, e.VirtualRouterID, priority, unicast, e.VIP, prefix,
		(3*e.AdvertInterval.Duration+e.AdvertInterval.Duration*time.Duration(256-priority)/256).Round(10*time.Millisecond),
		strconv.FormatFloat(e.AdvertInterval.Seconds(), 'f', -1, 64))
}

// haproxyDuration writes a duration in HAProxy's syntax (whole ms).
func haproxyDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}
