package check

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/hastack/hastack/internal/spec"
)

// galeraQuery asks a running MariaDB, over its local socket as root, for
// the cluster's identity and for accounts that log in without a password
// (not locked, not roles; accounts that authenticate by unix_socket carry
// the placeholder "invalid" as their password hash and are not listed).
// JSON_EXTRACT, not JSON_VALUE: the flags are JSON booleans, which
// JSON_VALUE turns into 1. One round trip.
const galeraQuery = `SHOW GLOBAL VARIABLES LIKE 'wsrep_cluster_name';
SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_state_uuid','wsrep_cluster_size','wsrep_cluster_status');
SELECT 'passwordless', CONCAT(QUOTE(User),'@',QUOTE(Host)) FROM mysql.global_priv
 WHERE JSON_VALUE(Priv,'$.plugin') IN ('mysql_native_password','mysql_old_password')
   AND IFNULL(JSON_VALUE(Priv,'$.authentication_string'),'') = ''
   AND IFNULL(JSON_EXTRACT(Priv,'$.account_locked'),'false') <> 'true'
   AND IFNULL(JSON_EXTRACT(Priv,'$.is_role'),'false') <> 'true';
`

// galeraFacts is one controller's view of its Galera cluster.
type galeraFacts struct {
	// FromGrastate: mariadb is not running; only the UUID is known, from
	// grastate.dat.
	FromGrastate bool
	Name         string // wsrep_cluster_name
	UUID         string // wsrep_cluster_state_uuid: one per cluster history
	Size         int
	Status       string // Primary, non-Primary, Disconnected
	Passwordless []string
}

const zeroUUID = "00000000-0000-0000-0000-000000000000"

func parseGaleraQuery(out string) galeraFacts {
	var g galeraFacts
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "\t")
		switch k {
		case "wsrep_cluster_name":
			g.Name = v
		case "wsrep_cluster_state_uuid":
			g.UUID = v
		case "wsrep_cluster_size":
			g.Size, _ = strconv.Atoi(v)
		case "wsrep_cluster_status":
			g.Status = v
		case "passwordless":
			g.Passwordless = append(g.Passwordless, v)
		}
	}
	return g
}

// sizeRule judges n members of a cluster whose every write or queue
// operation needs a majority: 1 has no failover, an even number tolerates
// no more failures than one fewer and loses quorum when split in halves.
func sizeRule(n int) (Status, string) {
	switch {
	case n <= 0:
		return Fail, "no controller"
	case n == 1:
		return Warn, "1 node: no failover"
	case n == 2:
		return Fail, "2 nodes: losing either loses quorum (use 3)"
	case n%2 == 0:
		return Fail, fmt.Sprintf("%d nodes: even, tolerates no more failures than %d and loses quorum when split in halves", n, n-1)
	default:
		return OK, fmt.Sprintf("%d nodes: tolerates %d failure(s)", n, (n-1)/2)
	}
}

// rabbitSizeRule judges n brokers with the spec's queue type. Quorum
// queues need a majority of their replicas, like Galera, except that an
// even count only costs a replica. Classic mirrored queues survive on any
// one mirror: the document asks for 3 in production and allows 2 for
// tests and demos.
func rabbitSizeRule(n int, queueType string) (Status, string) {
	switch {
	case n <= 0:
		return Fail, "no controller"
	case n == 1:
		return Warn, "1 node: no failover"
	case queueType == spec.QueueQuorum && n == 2:
		return Fail, "2 nodes with quorum queues: losing either stops every queue (use 3)"
	case queueType == spec.QueueQuorum:
		return OK, fmt.Sprintf("%d nodes, quorum queues: tolerates %d failure(s)", n, (n-1)/2)
	case n == 2:
		return Warn, "2 nodes with mirrored queues: enough for tests and demos, the document asks for 3 in production"
	default:
		return OK, fmt.Sprintf("%d nodes, mirrored queues: tolerates %d failure(s)", n, n-1)
	}
}

// judgeQuorum: the cluster sizes, from the spec and from the running
// engines where they run.
func judgeQuorum(c *spec.Cluster, f *facts) []Result {
	ctls := c.Controllers()
	n := len(ctls)

	g := Result{Node: ClusterNode, Check: "galera size", Limit: "odd, >= 3"}
	g.Status, g.Value = sizeRule(n)
	g.Value = "spec: " + g.Value
	primary := 0
	for _, ctl := range ctls {
		gf := f.nodes[ctl.Name].Galera
		if gf.Done && gf.Err == nil && !gf.V.FromGrastate && gf.V.Status == "Primary" && gf.V.Size > primary {
			primary = gf.V.Size
		}
	}
	if primary > 0 {
		g.Value += fmt.Sprintf("; running: %d in the Primary component", primary)
		if primary != n {
			g.Status = worst(g.Status, Warn)
		}
	}

	q := c.Spec.RabbitMQ.QueueType
	r := Result{Node: ClusterNode, Check: "rabbitmq size", Limit: ">= 3 for " + q + " queues"}
	r.Status, r.Value = rabbitSizeRule(n, q)
	r.Value = "spec: " + r.Value
	if f.Rabbit.Done && f.Rabbit.Err == nil {
		members := len(f.Rabbit.V.Nodes)
		r.Value += fmt.Sprintf("; running: %d members, %d running", members, f.Rabbit.V.RunningNodes)
		if members != n || f.Rabbit.V.RunningNodes != n {
			r.Status = worst(r.Status, Warn)
		}
	}
	return []Result{g, r}
}

// majority returns the value most nodes report, and whether it is
// unambiguous (no tie at the top).
func majority(values map[string]string) (string, bool) {
	count := map[string]int{}
	for _, v := range values {
		count[v]++
	}
	var keys []string
	for k := range count {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	best, tie := "", false
	for _, k := range keys {
		switch {
		case best == "" || count[k] > count[best]:
			best, tie = k, false
		case count[k] == count[best]:
			tie = true
		}
	}
	return best, !tie
}

// galeraUUIDs are the cluster state UUIDs the controllers report.
func galeraUUIDs(f *facts) map[string]string {
	m := map[string]string{}
	for _, ctl := range f.controllers {
		g := f.nodes[ctl.Name].Galera
		if g.Done && g.Err == nil && g.V.UUID != "" && g.V.UUID != zeroUUID {
			m[ctl.Name] = g.V.UUID
		}
	}
	return m
}

// judgeGaleraCluster: every controller belongs to one Galera cluster: the
// spec's cluster name, one state UUID (one history: a node with another
// UUID would throw its data away on joining, or refuse to), and a Primary
// component.
func judgeGaleraCluster(c *spec.Cluster, f *facts, nf *nodeFacts) Result {
	want := c.Spec.Database.ClusterName
	r := Result{Node: nf.Spec.Name, Check: "galera cluster", Limit: fmt.Sprintf("name %q, the same state UUID as the other controllers, Primary", want)}
	switch {
	case nf.ServicesErr != nil:
		r.Status, r.Value = Fail, "not measured: "+unreachable(nf)
		return r
	case !nf.deployed(svcMariaDB):
		r.Status, r.Value = OK, "not deployed yet"
		return r
	case nf.Galera.Err != nil:
		r.Status, r.Value = Fail, "not measured: "+errText(nf.Galera.Err)
		return r
	}
	g := nf.Galera.V
	uuids := galeraUUIDs(f)
	common, clear := majority(uuids)
	var problems []string
	switch {
	case g.UUID == "" || g.UUID == zeroUUID:
		problems = append(problems, "no cluster state UUID")
	case !clear && len(uuids) > 1:
		problems = append(problems, "the controllers disagree on the cluster state UUID: "+describeUUIDs(uuids))
	case g.UUID != common:
		problems = append(problems, fmt.Sprintf("state UUID %s, the others have %s: another cluster's history", short(g.UUID), short(common)))
	}
	if g.FromGrastate {
		// Stopped: it cannot be Primary, so only its history is judged,
		// and a stopped member warns.
		r.Status, r.Value = Warn, "mariadb not running; grastate.dat: state "+short(g.UUID)
		if len(problems) > 0 {
			r.Status, r.Value = Fail, "mariadb not running; grastate.dat: "+strings.Join(problems, "; ")
		}
		return r
	}
	if g.Name != want {
		problems = append(problems, fmt.Sprintf("cluster name %q", g.Name))
	}
	if g.Status != "Primary" {
		problems = append(problems, "component "+g.Status)
	}
	r.Value = fmt.Sprintf("%q, state %s, %s, %d nodes", g.Name, short(g.UUID), g.Status, g.Size)
	r.Status = OK
	if len(problems) > 0 {
		r.Status, r.Value = Fail, strings.Join(problems, "; ")+" ("+r.Value+")"
	}
	return r
}

func describeUUIDs(m map[string]string) string {
	var parts []string
	for n, u := range m {
		parts = append(parts, n+"="+short(u))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// short cuts a UUID or digest to its first 8 characters: enough to tell
// two apart in a report.
func short(s string) string {
	if len(s) > 8 {
		return s[:8] + "…"
	}
	return s
}

// judgeCookie: every RabbitMQ node must have the same Erlang cookie, or
// it cannot join the others (or, after its next restart, rejoin them). The
// file's SHA-256 is compared with the secrets file's cookie (or, without
// one, with the other controllers'); only a digest prefix is printed.
func judgeCookie(f *facts, nf *nodeFacts) Result {
	r := Result{Node: nf.Spec.Name, Check: "erlang cookie", Limit: "the same cookie on every controller"}
	if f.CookieDigest != "" {
		r.Limit = "the secrets file's cookie (sha256 " + short(f.CookieDigest) + ")"
	}
	switch {
	case nf.ServicesErr != nil:
		r.Status, r.Value = Fail, "not measured: "+unreachable(nf)
		return r
	case !nf.deployed(svcRabbitMQ):
		// A cookie the package made is replaced by the deploy.
		r.Status, r.Value = OK, "not deployed yet"
		return r
	case errors.Is(nf.Cookie.Err, fs.ErrNotExist):
		r.Status, r.Value = Fail, "no cookie file: the broker cannot cluster"
		return r
	case nf.Cookie.Err != nil:
		r.Status, r.Value = Fail, "not measured: "+errText(nf.Cookie.Err)
		return r
	}
	have := nf.Cookie.V
	r.Value = "sha256 " + short(have)
	want, clear := f.CookieDigest, true
	if want == "" {
		digests := map[string]string{}
		for name, o := range f.nodes {
			if o.Spec.IsController() && o.Cookie.Done && o.Cookie.Err == nil {
				digests[name] = o.Cookie.V
			}
		}
		want, clear = majority(digests)
	}
	switch {
	case !clear:
		r.Status, r.Value = Fail, r.Value+": the controllers' cookies disagree and there is no secrets file to tell which is right"
	case have != want && f.CookieDigest != "":
		r.Status, r.Value = Fail, r.Value+": not the secrets file's cookie; this broker cannot rejoin the others after its next restart"
	case have != want:
		r.Status, r.Value = Fail, r.Value+": differs from the other controllers'; this broker cannot rejoin them after its next restart"
	default:
		r.Status = OK
	}
	return r
}
