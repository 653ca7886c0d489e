package serve

import (
	"fmt"
	"strings"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/spec"
)

// RulesPath is where 'render' writes the alert rules, under its --out.
const RulesPath = "prometheus/hastack-alerts.yml"

// rule is one Prometheus alerting rule.
type rule struct {
	name, expr, forDur, severity, summary string
}

// Rules is a Prometheus alert rules file for the cluster, over the metrics
// 'hastack serve' exports: a node not serving, a Galera node not Synced or
// a cluster smaller than the spec, a RabbitMQ partition or alarm, a
// memcached down, a clock offset over the spec's maxClockOffset, no VIP
// holder or two, a service's database or user missing.
func Rules(c *spec.Cluster) engine.File {
	name := c.Metadata.Name
	sel := fmt.Sprintf(`cluster=%q`, name)
	ctls := len(c.Controllers())
	maxOff := c.Spec.Requirements.MaxClockOffset.Seconds()
	rules := []rule{
		{"HastackScrapeMissing", fmt.Sprintf(`absent(%s{%s})`, MetricHealthy, sel), "2m", "critical",
			"hastack serve for cluster " + name + " is not scraped: nothing below can fire"},
		{"HastackEngineDown", fmt.Sprintf(`%s{%s} == 0`, MetricUp, sel), "1m", "warning",
			"{{ $labels.service }} on {{ $labels.node }} is not healthy"},
		{"HastackNotServing", fmt.Sprintf(`%s{%s} == 0`, MetricServing, sel), "30s", "critical",
			"cluster " + name + " does not serve: the database endpoint, every broker or every memcached is down"},
		{"HastackNodeNotServing", fmt.Sprintf(`count by (cluster, node) (%s{%s} == 0) == count by (cluster, node) (%s{%s})`, MetricUp, sel, MetricUp, sel), "1m", "critical",
			"no engine on {{ $labels.node }} is healthy: the node is down or unreachable"},
		{"HastackGaleraNotSynced", fmt.Sprintf(`%s{%s} == 0`, MetricGaleraSynced, sel), "1m", "warning",
			"Galera on {{ $labels.node }} is not Synced in a Primary component"},
		{"HastackGaleraClusterSmall", fmt.Sprintf(`%s{%s} < %d`, MetricGaleraClusterSize, sel, ctls), "1m", "warning",
			fmt.Sprintf("Galera on {{ $labels.node }} sees {{ $value }} nodes; the spec has %d", ctls)},
		{"HastackRabbitMQPartition", fmt.Sprintf(`%s{%s} > 0`, MetricRabbitPartitions, sel), "0s", "critical",
			"RabbitMQ on {{ $labels.node }} is partitioned from {{ $value }} node(s)"},
		{"HastackRabbitMQAlarm", fmt.Sprintf(`%s{%s} == 1`, MetricRabbitAlarm, sel), "0s", "critical",
			"RabbitMQ {{ $labels.alarm }} alarm on {{ $labels.node }}: publishers are blocked"},
		{"HastackMemcachedDown", fmt.Sprintf(`%s{%s,service="memcached"} == 0`, MetricUp, sel), "1m", "warning",
			"memcached on {{ $labels.node }} does not answer: its share of the cache is lost"},
		{"HastackClockOffset", fmt.Sprintf(`abs(%s{%s}) > %g`, MetricClockOffset, sel, maxOff), "2m", "warning",
			fmt.Sprintf("the clock of {{ $labels.node }} is {{ $value }} s off (limit %g s, spec.requirements.maxClockOffset)", maxOff)},
		{"HastackNoVIPHolder", fmt.Sprintf(`sum by (cluster) (%s{%s}) == 0`, MetricVIPHolder, sel), "30s", "critical",
			"no controller holds the database VIP " + c.Spec.Database.Endpoint.VIP},
		{"HastackTwoVIPHolders", fmt.Sprintf(`sum by (cluster) (%s{%s}) > 1`, MetricVIPHolder, sel), "0s", "critical",
			"{{ $value }} controllers hold the database VIP " + c.Spec.Database.Endpoint.VIP + " (split keepalived)"},
		{"HastackServiceDatabase", fmt.Sprintf(`%s{%s} == 0`, MetricServiceDatabase, sel), "5m", "warning",
			"the database or user of {{ $labels.service }} is missing or its password differs from the secrets file: run hastack up"},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Rendered by hastack for cluster %s: alerts over the metrics of 'hastack serve'.\n", name)
	b.WriteString("# Load it with rule_files in prometheus.yml; scrape hastack serve's /metrics.\n")
	b.WriteString("groups:\n")
	fmt.Fprintf(&b, "  - name: hastack-%s\n    rules:\n", name)
	for _, r := range rules {
		fmt.Fprintf(&b, "      - alert: %s\n        expr: %s\n", r.name, yamlString(r.expr))
		if r.forDur != "0s" {
			fmt.Fprintf(&b, "        for: %s\n", r.forDur)
		}
		fmt.Fprintf(&b, "        labels:\n          severity: %s\n", r.severity)
		fmt.Fprintf(&b, "        annotations:\n          summary: %s\n", yamlString(r.summary))
	}
	return engine.File{Path: RulesPath, Content: []byte(b.String()), Mode: 0o644}
}

// yamlString is s as a double-quoted YAML scalar.
func yamlString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}
