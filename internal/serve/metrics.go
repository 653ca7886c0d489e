package serve

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hastack/hastack/internal/status"
)

// Metric names, in one place: the alert rules refer to them.
const (
	MetricUp                 = "hastack_up"
	MetricHealthy            = "hastack_cluster_healthy"
	MetricServing            = "hastack_cluster_serving"
	MetricGaleraSynced       = "hastack_galera_synced"
	MetricGaleraState        = "hastack_galera_state"
	MetricGaleraPrimary      = "hastack_galera_primary"
	MetricGaleraClusterSize  = "hastack_galera_cluster_size"
	MetricGaleraFlowControl  = "hastack_galera_flow_control_paused_ratio"
	MetricGaleraRecvQueue    = "hastack_galera_recv_queue"
	MetricRabbitRunning      = "hastack_rabbitmq_running"
	MetricRabbitPartitions   = "hastack_rabbitmq_partitions"
	MetricRabbitAlarm        = "hastack_rabbitmq_alarm"
	MetricRabbitQueues       = "hastack_rabbitmq_queues"
	MetricMemcachedItems     = "hastack_memcached_items"
	MetricMemcachedEvictions = "hastack_memcached_evictions_total"
	MetricMemcachedConns     = "hastack_memcached_connections"
	MetricClockOffset        = "hastack_clock_offset_seconds"
	MetricClockStratum       = "hastack_clock_stratum"
	MetricClockSynchronised  = "hastack_clock_synchronised"
	MetricVIPHolder          = "hastack_vip_holder"
	MetricWriter             = "hastack_writer"
	MetricServiceDatabase    = "hastack_service_database_ok"
	MetricProbeSeconds       = "hastack_probe_duration_seconds"
	MetricProbeAge           = "hastack_probe_age_seconds"
	MetricProbeRounds        = "hastack_probe_rounds_total"
)

// Engine names used as the service label.
const (
	svcGalera    = "galera"
	svcRabbit    = "rabbitmq"
	svcMemcached = "memcached"
	svcNTP       = "ntp"
	svcEndpoint  = "endpoint"
)

var nodeService = []string{"node", "service"}

// collector turns one round into metrics.
type collector struct {
	cluster string
	round   Round
	age     float64
	rounds  int
	descs   map[string]*prometheus.Desc
}

func newCollector(cluster string, round Round, age float64, rounds int) *collector {
	c := &collector{cluster: cluster, round: round, age: age, rounds: rounds, descs: map[string]*prometheus.Desc{}}
	cl := prometheus.Labels{"cluster": cluster}
	add := func(name, help string, extra ...string) {
		c.descs[name] = prometheus.NewDesc(name, help, append(append([]string{}, nodeService...), extra...), cl)
	}
	add(MetricUp, "1 when this engine on this node is healthy (as 'hastack status' judges it), 0 when not or when it could not be asked")
	c.descs[MetricHealthy] = prometheus.NewDesc(MetricHealthy, "1 when every engine on every node is healthy", nil, cl)
	c.descs[MetricServing] = prometheus.NewDesc(MetricServing, "1 when the layer serves (database through the VIP, a broker, a cache), even with less redundancy", nil, cl)
	add(MetricGaleraSynced, "1 when the node is Synced in a Primary component and ready")
	add(MetricGaleraState, "1 for the node's wsrep_local_state_comment (Synced, Donor/Desynced, Joining, ...; unknown when not asked)", "state")
	add(MetricGaleraPrimary, "1 when the node is in the Primary component")
	add(MetricGaleraClusterSize, "wsrep_cluster_size as the node sees it")
	add(MetricGaleraFlowControl, "wsrep_flow_control_paused: fraction of time replication was paused by flow control")
	add(MetricGaleraRecvQueue, "wsrep_local_recv_queue: write-sets received and not yet applied")
	add(MetricRabbitRunning, "1 when the RabbitMQ node runs as a member of the cluster")
	add(MetricRabbitPartitions, "number of running nodes this node cannot reach (a network partition when > 0)")
	add(MetricRabbitAlarm, "1 while the resource alarm is raised (publishers are blocked cluster-wide)", "alarm")
	add(MetricRabbitQueues, "queues in the cluster, by type (node: the node whose management API answered)", "type")
	add(MetricMemcachedItems, "items in the memcached")
	add(MetricMemcachedEvictions, "items evicted since start (the cache is too small when it grows)")
	add(MetricMemcachedConns, "open client connections")
	add(MetricClockOffset, "the node's clock offset as chronyd estimates it (positive: ahead)")
	add(MetricClockStratum, "chronyd's stratum")
	add(MetricClockSynchronised, "1 when chronyd follows a selected source")
	add(MetricVIPHolder, "1 on the controller that holds the database VIP")
	add(MetricWriter, "1 on the node that takes database writes through the VIP")
	add(MetricServiceDatabase, "1 when the OpenStack service's databases and user are as its rendered config needs (service: the OpenStack service, node: where writes go)")
	c.descs[MetricProbeSeconds] = prometheus.NewDesc(MetricProbeSeconds, "how long the probe round took", nil, cl)
	c.descs[MetricProbeAge] = prometheus.NewDesc(MetricProbeAge, "age of the probe round served (shared by concurrent scrapes)", nil, cl)
	c.descs[MetricProbeRounds] = prometheus.NewDesc(MetricProbeRounds, "probe rounds run since the server started (concurrent scrapes share one)", nil, cl)
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	r := c.round.Report
	g := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	cnt := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, v, labels...)
	}
	g(MetricHealthy, b2f(r.Healthy))
	g(MetricServing, b2f(r.Verdict != status.NotServing))
	g(MetricProbeSeconds, c.round.Took.Seconds())
	g(MetricProbeAge, c.age)
	cnt(MetricProbeRounds, float64(c.rounds))
	for _, e := range r.Services.Galera {
		g(MetricUp, b2f(e.Healthy), e.Node, svcGalera)
		g(MetricGaleraSynced, b2f(e.Healthy), e.Node, svcGalera)
		state := e.LocalState
		if state == "" {
			state = "unknown"
		}
		g(MetricGaleraState, 1, e.Node, svcGalera, state)
		g(MetricGaleraPrimary, b2f(e.ClusterStatus == "Primary"), e.Node, svcGalera)
		g(MetricGaleraClusterSize, float64(e.ClusterSize), e.Node, svcGalera)
		g(MetricGaleraFlowControl, e.FlowControlPaused, e.Node, svcGalera)
		g(MetricGaleraRecvQueue, float64(e.LocalRecvQueue), e.Node, svcGalera)
		g(MetricWriter, b2f(r.Writer != "" && r.Writer == e.Node), e.Node, svcGalera)
	}
	for _, e := range r.Services.RabbitMQ {
		g(MetricUp, b2f(e.Healthy), e.Node, svcRabbit)
		g(MetricRabbitRunning, b2f(e.Running), e.Node, svcRabbit)
		g(MetricRabbitPartitions, float64(len(e.Partitions)), e.Node, svcRabbit)
		g(MetricRabbitAlarm, b2f(e.MemoryAlarm), e.Node, svcRabbit, "memory")
		g(MetricRabbitAlarm, b2f(e.DiskAlarm), e.Node, svcRabbit, "disk")
	}
	if r.Bus.AnsweredBy != "" {
		// rabbit@ctl1 answered: the node is ctl1.
		by := r.Bus.AnsweredBy
		if _, host, ok := strings.Cut(by, "@"); ok {
			by = host
		}
		g(MetricRabbitQueues, float64(r.Bus.Queues.Total), by, svcRabbit, "all")
		for typ, n := range r.Bus.Queues.ByType {
			g(MetricRabbitQueues, float64(n), by, svcRabbit, typ)
		}
	}
	for _, e := range r.Services.Memcached {
		g(MetricUp, b2f(e.Healthy), e.Node, svcMemcached)
		if e.Healthy {
			g(MetricMemcachedItems, float64(e.CurrItems), e.Node, svcMemcached)
			cnt(MetricMemcachedEvictions, float64(e.Evictions), e.Node, svcMemcached)
			g(MetricMemcachedConns, float64(e.CurrConnections), e.Node, svcMemcached)
		}
	}
	for _, e := range r.Services.NTP {
		g(MetricUp, b2f(e.Healthy), e.Node, svcNTP)
		g(MetricClockSynchronised, b2f(e.Synchronised), e.Node, svcNTP)
		if e.Problem == "" || e.Stratum > 0 {
			g(MetricClockOffset, e.SystemOffset.Seconds(), e.Node, svcNTP)
			g(MetricClockStratum, float64(e.Stratum), e.Node, svcNTP)
		}
	}
	for _, e := range r.Services.Endpoint {
		g(MetricUp, b2f(e.Healthy), e.Node, svcEndpoint)
		if e.VIPUnknown == "" {
			g(MetricVIPHolder, b2f(e.HoldsVIP), e.Node, svcEndpoint)
		}
	}
	for _, d := range r.ServiceDatabases {
		g(MetricServiceDatabase, b2f(d.Missing() == ""), r.Writer, d.User)
	}
}
