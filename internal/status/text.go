package status

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// WriteText prints the report as tables, one per engine.
func (r Report) WriteText(w io.Writer, cluster string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "cluster %s: %s (probed in %s)\n\n", cluster, strings.ToUpper(r.Verdict), r.Duration.Round(time.Millisecond))

	fmt.Fprintln(tw, "GALERA\tHEALTHY\tSTATE\tCOMPONENT\tSIZE\tREADY\tFLOW-CONTROL\tRECV-QUEUE")
	for _, g := range r.Services.Galera {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%.2f\t%d\n", g.Node, yes(g.Healthy), dash(g.LocalState), dash(g.ClusterStatus), g.ClusterSize, yes(g.Ready), g.FlowControlPaused, g.LocalRecvQueue)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "RABBITMQ\tHEALTHY\tRUNNING\tPARTITIONS\tALARMS\tMEMORY\tUPTIME")
	for _, e := range r.Services.RabbitMQ {
		var alarms []string
		if e.MemoryAlarm {
			alarms = append(alarms, "memory")
		}
		if e.DiskAlarm {
			alarms = append(alarms, "disk")
		}
		mem := fmt.Sprintf("%d/%d MB", e.MemUsed>>20, e.MemLimit>>20)
		if !e.StatsReady {
			mem = "(metrics pending)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Node, yes(e.Healthy), yes(e.Running), dash(strings.Join(e.Partitions, ",")), dash(strings.Join(alarms, ",")), mem, e.Uptime.Round(time.Second))
	}
	var qs []string
	for typ, n := range r.Bus.Queues.ByType {
		qs = append(qs, fmt.Sprintf("%d %s", n, typ))
	}
	sort.Strings(qs)
	fmt.Fprintf(tw, "queues: %d (%s); guest user: %s\n", r.Bus.Queues.Total, dash(strings.Join(qs, ", ")), map[bool]string{true: "PRESENT", false: "absent"}[r.Bus.GuestUser])
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "MEMCACHED\tHEALTHY\tITEMS\tEVICTIONS\tCONNECTIONS\tUPTIME")
	for _, m := range r.Services.Memcached {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d/%d\t%s\n", m.Node, yes(m.Healthy), m.CurrItems, m.Evictions, m.CurrConnections, m.MaxConnections, time.Duration(m.UptimeSeconds)*time.Second)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "NTP\tHEALTHY\tSYNCHRONISED\tSTRATUM\tSOURCE\tOFFSET")
	for _, n := range r.Services.NTP {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", n.Node, yes(n.Healthy), yes(n.Synchronised), n.Stratum, dash(n.Reference), n.SystemOffset)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "ENDPOINT\tHEALTHY\tHOLDS-VIP\tSERVERS-UP\tSENDS-WRITES-TO")
	for _, e := range r.Services.Endpoint {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\n", e.Node, yes(e.Healthy), map[bool]string{true: "yes", false: "-"}[e.HoldsVIP], e.HAProxy.Up, len(e.HAProxy.Servers), dash(e.HAProxy.Active))
	}
	fmt.Fprintln(tw)
	if r.Writer != "" {
		fmt.Fprintf(tw, "database writes now go to: %s (asked through the VIP)\n", r.Writer)
	}
	if len(r.ServiceDatabases) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "SERVICE-DB\tOK\tMISSING\tOTHER-GRANTS")
		for _, d := range r.ServiceDatabases {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.User, yes(d.Missing() == ""), dash(d.Missing()), dash(strings.Join(d.Other, "; ")))
		}
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(tw, "problems:")
		for _, p := range r.Problems {
			fmt.Fprintf(tw, "  - %s\n", p)
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(tw, "notes:")
		for _, n := range r.Notes {
			fmt.Fprintf(tw, "  - %s\n", n)
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
