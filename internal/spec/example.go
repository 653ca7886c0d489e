package spec

import (
	"bytes"
	"fmt"
	"net/netip"
	"text/template"
)

// ExampleOptions shapes the example spec written by 'hastack init' and by
// 'hastack lab up' when it is given no spec.
type ExampleOptions struct {
	Name        string
	Controllers int
	Computes    int
	// Lab sizes the example for virtual nodes sharing one machine: small
	// caches and hardware minimums the lab can meet.
	Lab bool
}

// Address plan of the example: a /22 management network and a provider
// network with the same host numbering.
//
//	x.x.0.2        upstream time server (the lab runs a stand-in there)
//	x.x.0.10       database endpoint VIP
//	x.x.0.11..     controllers
//	x.x.1.1..      computes
const (
	exampleMgmt     = "10.77.0.0/22"
	exampleProvider = "10.78.0.0/22"
	// MaxExampleControllers and MaxExampleComputes bound the address plan.
	MaxExampleControllers = 89
	MaxExampleComputes    = 766
)

// ExampleUpstream is the upstream time server address of the example spec.
const ExampleUpstream = "10.77.0.2"

type exampleNode struct {
	Name, Role, Mgmt, Provider string
}

// ExampleYAML returns an annotated spec that validates.
func ExampleYAML(o ExampleOptions) ([]byte, error) {
	if o.Name == "" {
		o.Name = "lab"
	}
	if o.Controllers < 1 || o.Controllers > MaxExampleControllers {
		return nil, fmt.Errorf("--controllers %d: the example supports 1 to %d", o.Controllers, MaxExampleControllers)
	}
	if o.Computes < 0 || o.Computes > MaxExampleComputes {
		return nil, fmt.Errorf("--computes %d: the example supports 0 to %d", o.Computes, MaxExampleComputes)
	}
	var nodes []exampleNode
	for i := 0; i < o.Controllers; i++ {
		nodes = append(nodes, exampleNode{fmt.Sprintf("ctl%d", i+1), RoleController, hostAddr(exampleMgmt, 11+i), hostAddr(exampleProvider, 11+i)})
	}
	for i := 0; i < o.Computes; i++ {
		nodes = append(nodes, exampleNode{fmt.Sprintf("cmp%d", i+1), RoleCompute, hostAddr(exampleMgmt, 257+i), hostAddr(exampleProvider, 257+i)})
	}
	data := map[string]any{
		"O": o, "Nodes": nodes, "Mgmt": exampleMgmt, "Provider": exampleProvider,
		"Upstream": ExampleUpstream, "VIP": hostAddr(exampleMgmt, 10),
		"Partition": DefaultPartitionHandling(o.Controllers),
	}
	var b bytes.Buffer
	if err := exampleTmpl.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func hostAddr(cidr string, n int) string {
	a := netip.MustParsePrefix(cidr).Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

var exampleTmpl = template.Must(template.New("example").Parse(`# hastack cluster spec: the highly-available shared services of an OpenStack
# control plane (time, cache, database, message bus) and the database endpoint.
# Check it with 'hastack validate'; see every file it produces with
# 'hastack render --out DIR'. No secret belongs here: passwords and the Erlang
# cookie are generated into a separate secrets file (mode 0600) beside this one.
apiVersion: hastack/v1alpha1
kind: Cluster
metadata:
  name: {{.O.Name}}
spec:
  # Two networks, as the source document asks for two NICs per node:
  # management (every engine binds here) and provider (instance traffic).
  networks:
  - name: management
    cidr: {{.Mgmt}}
  - name: provider
    cidr: {{.Provider}}

  # How hastack reaches the nodes. Without an ssh block, nodes are lab nodes on
  # this machine ('hastack lab up'). {{if .O.Lab}}'hastack lab up --ssh' starts sshd in every
  # lab node and adds the block that reaches them over SSH instead.{{else}}For real hosts, uncomment it: every node
  # is then reached over SSH with these settings (a node's own 'ssh:' block
  # overrides them field by field, and may name another 'host' than its address).{{end}}
  # ssh:
  #   user: root                        # another user needs passwordless sudo ('sudo -n')
  #   port: 22
  #   identityFile: ~/.ssh/id_ed25519   # a key without passphrase; or agent: true
  #   knownHosts: ~/.ssh/known_hosts    # every host key is checked against it
  #   acceptNewHostKeys: false          # true trusts a host's key on first use; a changed key is always refused

  # Controllers run chrony (serving time), memcached, MariaDB Galera, RabbitMQ
  # and the database endpoint; computes follow the controllers' time.
  # 3 controllers tolerate the loss of 1; 2 cannot fail over.
  nodes:
{{- range .Nodes}}
  - name: {{.Name}}
    role: {{.Role}}
    address: {{.Mgmt}}
    interfaces:
    - {name: eth0, network: management}
    - {name: eth1, network: provider, address: {{.Provider}}}
{{- end}}

  # Controllers follow these lower-stratum servers; every other node follows
  # the controllers. {{if .O.Lab}}In the lab, {{.Upstream}} is a stand-in time server the lab
  # runs itself (there is no outside network).{{else}}Replace {{.Upstream}} with your site's NTP servers.{{end}}
  ntp:
    upstream: [{{.Upstream}}]

  # One memcached per controller, no clustering: clients spread keys over all.
  memcached:
    port: 11211
    memoryMB: {{if .O.Lab}}64{{else}}1024{{end}}
    maxConnections: 4096
    # How long a service's cache call waits for a memcached before it takes
    # it for dead (library default 3s), and when it tries a dead one again
    # (default 300s). See docs/spec.md for what each costs.
    clientTimeout: 300ms
    clientDeadRetry: 10s

  database:
    flavor: mariadb            # galera-mysql and percona-xtradb: not supported yet
    port: 3306
    sstMethod: mariabackup     # a donor keeps serving during a full transfer (rsync blocks it)
    gcacheSize: {{if .O.Lab}}128M{{else}}1G{{end}}           # sized so a node that was briefly down rejoins by IST, not a full copy
    maxConnections: 4096
    # A node that hangs or vanishes is dropped after suspectTimeout; every
    # commit waits that long (Galera's defaults: 1s and 5s).
    keepalivePeriod: 500ms
    suspectTimeout: 1500ms
    # The one database address services use: HAProxy on every controller sends
    # all writes to one Synced node, behind a keepalived virtual IP.
    endpoint:
      vip: {{.VIP}}
      port: 3306
      advertInterval: 500ms    # the VIP moves after ~3 missed adverts (keepalived's default: 1s)
      checkInterval: 500ms     # HAProxy marks a hung node down in ~3.5 intervals (default: 2s, 3 falls)

  rabbitmq:
    port: 5672
    queueType: quorum          # or 'mirrored': the document's classic mirrored queues
    partitionHandling: {{.Partition}}
    netTickTime: 5s            # a frozen node leaves the cluster in ~5s, not the default 60s
    clientHeartbeat: 4s        # services give up a silent broker after 2x this (library default 60s)
    vhost: /
    user: openstack

  # The OpenStack services on top ('hastack render' writes their settings for
  # this layer; 'hastack lint' checks existing ones): option names follow this
  # release. zed is what Debian 12 ships; 2026.1 is the current release.
  openstack:
    release: zed

  # The source document's hardware table and latency limit; 'hastack check'
  # measures every node against them.
  requirements:
{{- if .O.Lab}}
    # Lab nodes share one machine, so these are what one lab node can show;
    # real controllers need the document's 4 cores, 12 GB, 120 GB, 2 NICs.
    controller: {cores: 1, memoryGB: 1, diskGB: 5, nics: 2}
    compute: {cores: 1, memoryGB: 1, diskGB: 5, nics: 2}
{{- else}}
    controller: {cores: 4, memoryGB: 12, diskGB: 120, nics: 2}
    compute: {cores: 8, memoryGB: 12, diskGB: 120, nics: 2}
{{- end}}
    maxLatency: 2ms
    maxClockOffset: 50ms

  # What 'hastack drill' holds the layer to (exit 1 names each miss; data
  # loss is never a target: any is exit 3). For a hung or vanished controller.
  drill:
    targets:
      db: {window: 3s}            # writes through the VIP
      mq: {window: 10s}           # confirmed publishes
      rpc: {window: 10s, killMQWindow: 1s}
      cache:
        worstCall: 500ms          # oslo.cache's slowest single call
        missedExtraPoints: 5      # keys missed <= 1/N per server the fault reaches + 5 points
        servedAgainWithin: 30s    # a returning server's keys served again, from the heal
      healthyAfter: 90s           # status healthy again, from the heal
`))
