package rabbitmq

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultTimeout bounds a probe whose context has no deadline. The
// management API answers from the stats database in milliseconds; a broker
// that needs seconds is in trouble, and the probe should say so rather than
// wait.
const DefaultTimeout = 5 * time.Second

// maxListed caps the queue names a report lists per finding: with thousands
// of OpenStack queues, a count and a sample say as much as the full list.
const maxListed = 20

// ProbeOptions says which management API to ask and what cluster to expect.
type ProbeOptions struct {
	// URL is the management API's base, e.g. "http://10.77.0.11:15672".
	URL string
	// User and Password: the administrator (AdminUser, secret
	// rabbitmq/hastack); /api/users needs the administrator tag.
	User     string
	Password string
	// ExpectedNodes are the Erlang node names that must be running, e.g.
	// NodeName of every controller. Empty: every node the cluster knows.
	ExpectedNodes []string
}

// NodeStatus is one cluster member as the management API reports it.
type NodeStatus struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
	// Partitions lists the nodes this one cannot reach although they are
	// running: a network partition, the split the partition handling mode
	// exists for.
	Partitions []string `json:"partitions"`
	// MemoryAlarm and DiskAlarm: the node blocks every publishing
	// connection cluster-wide while either is raised.
	MemoryAlarm   bool  `json:"memoryAlarm"`
	DiskAlarm     bool  `json:"diskAlarm"`
	MemUsed       int64 `json:"memUsed"`
	MemLimit      int64 `json:"memLimit"`
	DiskFree      int64 `json:"diskFree"`
	DiskFreeLimit int64 `json:"diskFreeLimit"`
	FDUsed        int64 `json:"fdUsed"`
	FDTotal       int64 `json:"fdTotal"`
	// Uptime since the node's start.
	Uptime time.Duration `json:"uptimeNs"`
	// StatsReady is false while the management plugin has not yet
	// collected the node's metrics (the first seconds after a start):
	// partitions and alarms are then unknown, not absent.
	StatsReady bool `json:"statsReady"`
}

// Queues summarises every queue of every vhost.
type Queues struct {
	Total  int            `json:"total"`
	ByType map[string]int `json:"byType"` // quorum, classic, stream
	// NotRunning: queues whose process is down, crashed, stopped or
	// without a quorum (state other than running/live/idle/flow).
	NotRunning []string `json:"notRunning,omitempty"`
	// QuorumLackingMembers: quorum queues with a replica on fewer than all
	// the expected nodes (declared while a node was away, never grown).
	QuorumLackingMembers []string `json:"quorumLackingMembers,omitempty"`
	// QuorumMembersOffline: quorum queues with a replica on a node that is
	// down; QuorumNoLeader: quorum queues without a leader, which refuse
	// every operation.
	QuorumMembersOffline []string `json:"quorumMembersOffline,omitempty"`
	QuorumNoLeader       []string `json:"quorumNoLeader,omitempty"`
	// MirroredLackingMirrors: classic queues under an ha-mode policy with
	// fewer mirrors than the policy asks for; MirroredUnsynchronised: with
	// a mirror that lacks some of the messages, and so cannot take over
	// without losing them (ha-promote-on-failure when-synced).
	MirroredLackingMirrors []string `json:"mirroredLackingMirrors,omitempty"`
	MirroredUnsynchronised []string `json:"mirroredUnsynchronised,omitempty"`
	// Counts behind the lists above, which are cut at a sample.
	Counts map[string]int `json:"counts,omitempty"`
}

// Status is one node's management API's view of the RabbitMQ cluster.
type Status struct {
	// Healthy: every expected node runs, none sees a partition, no alarm
	// is raised.
	Healthy bool   `json:"healthy"`
	Problem string `json:"problem,omitempty"`
	// Warnings are findings that degrade high availability but leave the
	// bus working: the guest user present, queues short of replicas or
	// unsynchronised, queues down.
	Warnings []string `json:"warnings,omitempty"`
	URL      string   `json:"url"`

	ClusterName  string       `json:"clusterName"`
	Version      string       `json:"version"`
	AnsweredBy   string       `json:"answeredBy"` // the node whose API answered
	Nodes        []NodeStatus `json:"nodes"`
	RunningNodes int          `json:"runningNodes"`
	// MissingNodes are expected nodes that are not running, or not even
	// members of this cluster.
	MissingNodes []string `json:"missingNodes,omitempty"`
	// GuestUser: the default guest/guest administrator exists. The
	// rendered definitions never create it, so it is a warning.
	GuestUser bool   `json:"guestUser"`
	Queues    Queues `json:"queues"`
}

// Probe asks one node's management API for the cluster's nodes, queues,
// users and policies, in parallel.
//
// The returned Status carries a Problem whenever it is not healthy. The
// error is non-nil when the API could not be asked or refused the login.
func Probe(ctx context.Context, o ProbeOptions) (Status, error) {
	base := strings.TrimRight(o.URL, "/")
	st := Status{URL: base}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	c := &apiClient{
		base: base, user: o.User, password: o.Password,
		// No proxy from the environment: the API is on the management
		// network. No keep-alive: the probe runs now and then.
		http: &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
	}

	var (
		overview apiOverview
		nodes    []apiNode
		queues   []apiQueue
		users    []apiUser
		policies []apiPolicy
		alarms   apiAlarms
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		failed   int
	)
	call := func(f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				mu.Lock()
				defer mu.Unlock()
				if firstErr == nil {
					firstErr = err
				}
				failed++
			}
		})
	}
	get := func(path string, v any) { call(func() error { return c.get(ctx, path, v) }) }
	get("/api/overview?columns=cluster_name,rabbitmq_version,node", &overview)
	get("/api/nodes?columns=name,running,partitions,mem_alarm,disk_free_alarm,mem_used,mem_limit,disk_free,disk_free_limit,fd_used,fd_total,uptime", &nodes)
	// The node metrics above lag by a collection interval (5 s and more);
	// the alarms health check answers from the alarms in force now.
	call(func() error { return c.alarms(ctx, &alarms) })
	// disable_stats: membership and state only, not message rates; with
	// thousands of queues that is most of the cost.
	get("/api/queues?disable_stats=true&columns=name,vhost,type,state,node,leader,members,online,policy,slave_nodes,synchronised_slave_nodes", &queues)
	get("/api/users?columns=name", &users)
	get("/api/policies", &policies)
	wg.Wait()
	if firstErr != nil {
		// A down API fails every request alike: one error says it.
		err := fmt.Errorf("rabbitmq probe %s: %w", base, firstErr)
		if failed > 1 {
			err = fmt.Errorf("%w (and %d more requests failed)", err, failed-1)
		}
		st.Problem = err.Error()
		return st, err
	}
	st = judge(base, o.ExpectedNodes, overview, nodes, queues, users, policies, alarms)
	return st, nil
}

// alarms asks /api/health/checks/alarms, which answers 200 when no alarm is
// in force and 503 with the alarms otherwise.
func (c *apiClient) alarms(ctx context.Context, out *apiAlarms) error {
	const path = "/api/health/checks/alarms"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.user, c.password)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusServiceUnavailable:
		out.Checked = true
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(out); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	case http.StatusNotFound:
		return nil // older than 3.8.10: the node metrics' flags stand alone
	case http.StatusUnauthorized:
		return fmt.Errorf("%s: login refused for user %q (401)", path, c.user)
	default:
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
}

type apiClient struct {
	base, user, password string
	http                 *http.Client
}

func (c *apiClient) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.user, c.password)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	endpoint, _, _ := strings.Cut(path, "?")
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%s: login refused for user %q (401)", endpoint, c.user)
	case resp.StatusCode != http.StatusOK:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("%s: %s: %s", endpoint, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 256<<20)).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", endpoint, err)
	}
	return nil
}

// The parts of the management API's answers the probe reads. Pointers mark
// fields the API leaves out until it has collected the node's metrics.
type (
	apiOverview struct {
		ClusterName string `json:"cluster_name"`
		Version     string `json:"rabbitmq_version"`
		Node        string `json:"node"`
	}
	apiNode struct {
		Name          string    `json:"name"`
		Running       bool      `json:"running"`
		Partitions    *[]string `json:"partitions"`
		MemAlarm      *bool     `json:"mem_alarm"`
		DiskFreeAlarm *bool     `json:"disk_free_alarm"`
		MemUsed       int64     `json:"mem_used"`
		MemLimit      int64     `json:"mem_limit"`
		DiskFree      int64     `json:"disk_free"`
		DiskFreeLimit int64     `json:"disk_free_limit"`
		FDUsed        int64     `json:"fd_used"`
		FDTotal       int64     `json:"fd_total"`
		UptimeMs      int64     `json:"uptime"`
	}
	apiQueue struct {
		Name   string `json:"name"`
		VHost  string `json:"vhost"`
		Type   string `json:"type"`
		State  string `json:"state"`
		Policy string `json:"policy"`
		// Quorum queues.
		Leader  string   `json:"leader"`
		Members []string `json:"members"`
		Online  []string `json:"online"`
		// Classic queues: mirrors (the API's word is slaves).
		Mirrors       *[]string `json:"slave_nodes"`
		SyncedMirrors []string  `json:"synchronised_slave_nodes"`
	}
	apiUser struct {
		Name string `json:"name"`
	}
	apiAlarms struct {
		Checked bool `json:"-"` // the health check answered
		Alarms  []struct {
			Node     string `json:"node"`
			Resource string `json:"resource"` // "memory" or "disk space"
		} `json:"alarms"`
	}
	apiPolicy struct {
		VHost      string         `json:"vhost"`
		Name       string         `json:"name"`
		Definition map[string]any `json:"definition"`
	}
)

// judge turns the API's answers into a verdict; no I/O, so that captured
// answers test it.
func judge(base string, expected []string, ov apiOverview, nodes []apiNode, queues []apiQueue, users []apiUser, policies []apiPolicy, alarms apiAlarms) Status {
	st := Status{URL: base, ClusterName: ov.ClusterName, Version: ov.Version, AnsweredBy: ov.Node}
	var problems []string
	liveAlarm := func(node, resource string) bool {
		for _, a := range alarms.Alarms {
			if a.Node == node && a.Resource == resource {
				return true
			}
		}
		return false
	}

	byName := map[string]apiNode{}
	for _, n := range nodes {
		byName[n.Name] = n
		ns := NodeStatus{
			Name: n.Name, Running: n.Running,
			MemUsed: n.MemUsed, MemLimit: n.MemLimit, DiskFree: n.DiskFree, DiskFreeLimit: n.DiskFreeLimit,
			FDUsed: n.FDUsed, FDTotal: n.FDTotal, Uptime: time.Duration(n.UptimeMs) * time.Millisecond,
			StatsReady: n.Partitions != nil && n.MemAlarm != nil && n.DiskFreeAlarm != nil,
		}
		if n.Partitions != nil {
			ns.Partitions = *n.Partitions
		}
		if alarms.Checked {
			ns.MemoryAlarm = liveAlarm(n.Name, "memory")
			ns.DiskAlarm = liveAlarm(n.Name, "disk space")
		} else {
			ns.MemoryAlarm = n.MemAlarm != nil && *n.MemAlarm
			ns.DiskAlarm = n.DiskFreeAlarm != nil && *n.DiskFreeAlarm
		}
		if n.Running {
			st.RunningNodes++
		}
		st.Nodes = append(st.Nodes, ns)

		if !n.Running {
			continue // reported below, as a missing node, when expected
		}
		if n.Partitions == nil {
			problems = append(problems, n.Name+": metrics not collected yet (just started?): partitions unknown")
		} else if len(ns.Partitions) > 0 {
			problems = append(problems, fmt.Sprintf("%s: network partition, cannot reach %s", n.Name, strings.Join(ns.Partitions, ", ")))
		}
		if !alarms.Checked && !ns.StatsReady {
			problems = append(problems, n.Name+": alarms unknown")
		}
		if ns.MemoryAlarm {
			problems = append(problems, fmt.Sprintf("%s: memory alarm (%d of %d bytes used): publishers are blocked", n.Name, n.MemUsed, n.MemLimit))
		}
		if ns.DiskAlarm {
			problems = append(problems, fmt.Sprintf("%s: disk alarm (%d bytes free, limit %d): publishers are blocked", n.Name, n.DiskFree, n.DiskFreeLimit))
		}
	}

	want := expected
	if len(want) == 0 {
		for _, n := range nodes {
			want = append(want, n.Name)
		}
	}
	for _, name := range want {
		n, ok := byName[name]
		switch {
		case !ok:
			st.MissingNodes = append(st.MissingNodes, name)
			problems = append(problems, name+": not a member of this cluster")
		case !n.Running:
			st.MissingNodes = append(st.MissingNodes, name)
			problems = append(problems, name+": not running")
		}
	}

	if len(expected) > 0 {
		for _, n := range nodes {
			if !slices.Contains(expected, n.Name) {
				st.Warnings = append(st.Warnings, n.Name+": a member of the cluster that the spec does not name (rabbitmqctl forget_cluster_node removes it)")
			}
		}
	}

	for _, u := range users {
		if u.Name == "guest" {
			st.GuestUser = true
			st.Warnings = append(st.Warnings, "the default guest user exists (password guest, administrator): delete it")
		}
	}

	st.Queues = queueSummary(queues, want, policies)
	for _, w := range []struct {
		key, text string
		names     []string
	}{
		{"notRunning", "queues not running", st.Queues.NotRunning},
		{"quorumNoLeader", "quorum queues without a leader (unavailable)", st.Queues.QuorumNoLeader},
		{"quorumMembersOffline", "quorum queues with a replica down", st.Queues.QuorumMembersOffline},
		{"quorumLackingMembers", "quorum queues not on every node", st.Queues.QuorumLackingMembers},
		{"mirroredLackingMirrors", "mirrored queues short of mirrors", st.Queues.MirroredLackingMirrors},
		{"mirroredUnsynchronised", "mirrored queues with unsynchronised mirrors", st.Queues.MirroredUnsynchronised},
	} {
		if n := st.Queues.Counts[w.key]; n > 0 {
			more := ""
			if n > len(w.names) {
				more = fmt.Sprintf(", and %d more", n-len(w.names))
			}
			st.Warnings = append(st.Warnings, fmt.Sprintf("%d %s: %s%s", n, w.text, strings.Join(w.names, ", "), more))
		}
	}

	st.Problem = strings.Join(problems, "; ")
	st.Healthy = st.Problem == ""
	return st
}

// queueSummary counts queues by type and finds those short of replicas.
func queueSummary(queues []apiQueue, nodes []string, policies []apiPolicy) Queues {
	q := Queues{Total: len(queues), ByType: map[string]int{}, Counts: map[string]int{}}
	haPolicy := map[string]map[string]any{} // vhost + "\x00" + name -> definition
	for _, p := range policies {
		if _, ok := p.Definition["ha-mode"]; ok {
			haPolicy[p.VHost+"\x00"+p.Name] = p.Definition
		}
	}
	add := func(list *[]string, key, name string) {
		q.Counts[key]++
		if len(*list) < maxListed {
			*list = append(*list, name)
		}
	}
	for _, qu := range queues {
		typ := qu.Type
		if typ == "" {
			typ = "classic"
		}
		q.ByType[typ]++
		name := qu.Name
		if qu.VHost != "/" {
			name = qu.VHost + "/" + qu.Name
		}
		switch qu.State {
		case "", "running", "live", "idle", "flow":
			// "" until the stats are collected; "live" when asked with
			// disable_stats.
		default:
			add(&q.NotRunning, "notRunning", name+" ("+qu.State+")")
		}
		switch typ {
		case "quorum":
			if qu.Leader == "" {
				add(&q.QuorumNoLeader, "quorumNoLeader", name)
			}
			if !subset(qu.Members, qu.Online) {
				add(&q.QuorumMembersOffline, "quorumMembersOffline", name)
			}
			if !subset(nodes, qu.Members) {
				add(&q.QuorumLackingMembers, "quorumLackingMembers", name)
			}
		case "classic":
			def, mirrored := haPolicy[qu.VHost+"\x00"+qu.Policy]
			if !mirrored || qu.Mirrors == nil {
				continue
			}
			if want := wantMirrors(def, len(nodes)); len(*qu.Mirrors) < want {
				add(&q.MirroredLackingMirrors, "mirroredLackingMirrors", fmt.Sprintf("%s (%d of %d)", name, len(*qu.Mirrors), want))
			}
			if !subset(*qu.Mirrors, qu.SyncedMirrors) {
				add(&q.MirroredUnsynchronised, "mirroredUnsynchronised", name)
			}
		}
	}
	for _, l := range [][]string{q.NotRunning, q.QuorumNoLeader, q.QuorumMembersOffline, q.QuorumLackingMembers, q.MirroredLackingMirrors, q.MirroredUnsynchronised} {
		sort.Strings(l)
	}
	if len(q.Counts) == 0 {
		q.Counts = nil
	}
	return q
}

// wantMirrors is how many mirrors (besides the leader) an ha-mode policy
// asks for on a cluster of n nodes; 0 when it cannot tell (ha-mode nodes
// names its nodes, which may not all exist).
func wantMirrors(def map[string]any, n int) int {
	switch def["ha-mode"] {
	case "all":
		return n - 1
	case "exactly":
		if count, ok := def["ha-params"].(float64); ok {
			return min(int(count), n) - 1
		}
	}
	return 0
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// ManagementURL is the management API's base URL on a controller.
func ManagementURL(address string, port int) string {
	return "http://" + net.JoinHostPort(address, strconv.Itoa(port))
}
