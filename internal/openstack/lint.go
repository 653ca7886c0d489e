package openstack

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/hastack/hastack/internal/spec"
)

// Severity of a lint finding. Only errors fail 'hastack lint'.
type Severity int

// Severities, least severe first.
const (
	Info Severity = iota
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Warning:
		return "warning"
	}
	return "info"
}

// Finding is one HA mistake in a service config.
type Finding struct {
	File     string
	Line     int
	Severity Severity
	Message  string
	Fix      string
}

// String is the finding as 'hastack lint' prints it:
// file:line: severity: message (fix: ...).
func (f Finding) String() string {
	s := fmt.Sprintf("%s:%d: %s: %s", f.File, f.Line, f.Severity, f.Message)
	if f.Fix != "" {
		s += " (fix: " + f.Fix + ")"
	}
	return s
}

// LintOptions tell the linter what to check against.
type LintOptions struct {
	// Release whose option names apply.
	Release string
	// Cluster, when set, is the cluster the service uses: its server
	// lists and endpoint are compared with the file's.
	Cluster *spec.Cluster
}

// Lint checks one service config. It never fails: a file that cannot be
// read as a service config is itself a finding.
func Lint(name string, data []byte, o LintOptions) []Finding {
	l := &linter{file: name, o: o}
	out := l.lint(data)
	var creds []string
	if l.cfg != nil {
		creds = l.credentials()
	}
	for i := range out {
		out[i].Message = mask(out[i].Message, creds)
		out[i].Fix = mask(out[i].Fix, creds)
	}
	return out
}

func (l *linter) lint(data []byte) []Finding {
	o := l.o
	cat, ok := catalogFor(o.Release)
	if !ok {
		l.add(0, Error, fmt.Sprintf("OpenStack release %q is not one hastack knows", o.Release), "use one of "+strings.Join(spec.OpenStackReleases, ", "))
		return l.out
	}
	l.cat = cat
	cfg, err := ParseConfig(data)
	if err != nil {
		pe, _ := err.(*ParseError)
		line := 1
		if pe != nil {
			line = pe.Line
		}
		if !hasSectionHeader(data) {
			l.add(line, Error, "not an OpenStack service config: no [section] header, and oslo.config refuses it ("+err.Error()+")", "pass a service config such as /etc/nova/nova.conf")
		} else {
			l.add(line, Error, "oslo.config cannot parse this file, so the service does not start: "+pe.Msg, "correct the line")
		}
		return l.out
	}
	l.cfg = cfg
	if !l.isServiceConfig() {
		line := 1
		if len(cfg.SectionOrder) > 0 {
			line = cfg.Sections[cfg.SectionOrder[0]]
		}
		l.add(line, Error, "not an OpenStack service config: it has no transport_url and none of the sections [oslo_messaging_rabbit], [oslo_messaging_notifications], [database], [cache], [keystone_authtoken]; nothing was checked", "pass a service config such as /etc/nova/nova.conf")
		return l.out
	}
	l.sections()
	l.options()
	l.messaging()
	l.cache()
	l.authtoken()
	l.databases()
	sort.SliceStable(l.out, func(i, j int) bool { return l.out[i].Line < l.out[j].Line })
	return l.out
}

// masked is what a credential reads as in a finding.
const masked = "****"

// urlPassword is the password part of a URL's user info, in any text:
// rabbit://user:PASSWORD@host, mysql+pymysql://user:PASSWORD@host/db.
var urlPassword = regexp.MustCompile(`(://[^:@/\s,]*:|,[^:@/\s,]*:)([^@\s]*)@`)

// credentials are the values of the file that must never be printed: every
// password in a URL's user info, and every option whose name says it holds
// a secret.
func (l *linter) credentials() []string {
	var out []string
	for _, a := range l.cfg.Assignments {
		k := strings.ToLower(a.Key)
		if strings.Contains(k, "password") || strings.Contains(k, "secret") || strings.HasSuffix(k, "_key") || strings.HasSuffix(k, "token") {
			if a.Value != "" {
				out = append(out, a.Value)
			}
		}
		for _, m := range urlPassword.FindAllStringSubmatch(a.Value, -1) {
			if m[2] != "" {
				out = append(out, m[2])
			}
		}
	}
	// Longest first, so that a secret containing another is masked whole.
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// mask hides credentials in a finding's text: the file's own secrets in
// any quoted value, and any URL password even when the file could not be
// parsed.
func mask(text string, secrets []string) string {
	// Findings quote values (%q); a secret is masked inside a quoted
	// value, never in the words around it (a one-letter password must
	// not mask every such letter of the message).
	text = quoted.ReplaceAllStringFunc(text, func(q string) string {
		for _, s := range secrets {
			q = strings.ReplaceAll(q, s, masked)
		}
		return q
	})
	return urlPassword.ReplaceAllString(text, "${1}"+masked+"@")
}

// quoted is a Go-quoted string in a message.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

type linter struct {
	file string
	o    LintOptions
	cat  *catalog
	cfg  *Config
	out  []Finding
}

func (l *linter) add(line int, sev Severity, msg, fix string) {
	l.out = append(l.out, Finding{File: l.file, Line: line, Severity: sev, Message: msg, Fix: fix})
}

func hasSectionHeader(data []byte) bool {
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "[") {
			return true
		}
	}
	return false
}

func (l *linter) isServiceConfig() bool {
	if _, ok := l.cfg.Get("DEFAULT", "transport_url"); ok {
		return true
	}
	for _, s := range l.cfg.SectionOrder {
		if s != "DEFAULT" && l.cat.groups[s] != nil || strings.HasPrefix(s, "oslo_messaging_") {
			return true
		}
	}
	return false
}

// sectionLine is where a finding about a section goes: its header, or the
// first line when the section is absent.
func (l *linter) sectionLine(s string) int {
	if n, ok := l.cfg.Sections[s]; ok {
		return n
	}
	return 1
}

// sections reports sections the release does not read: removed ones, and
// near misses of the library sections (whose options are then silently
// ignored).
func (l *linter) sections() {
	var libs []string
	for g := range l.cat.groups {
		if g != "DEFAULT" {
			libs = append(libs, g)
		}
	}
	sort.Strings(libs)
	for _, s := range l.cfg.SectionOrder {
		line := l.cfg.Sections[s]
		if s == "DEFAULT" || l.cat.groups[s] != nil {
			continue
		}
		if why, ok := l.cat.removedSections[s]; ok {
			l.add(line, Warning, fmt.Sprintf("[%s]: %s; OpenStack %s ignores the section", s, why, l.cat.release), "delete it")
			continue
		}
		if near := nearest(s, libs, 2); near != "" {
			l.add(line, Error, fmt.Sprintf("[%s] is not a section OpenStack %s reads: its options are silently ignored", s, l.cat.release), "rename it ["+near+"]")
			continue
		}
		if strings.HasPrefix(s, "oslo_messaging_") && s != "oslo_messaging_kafka" && !(s == "oslo_messaging_amqp" && l.cat.release == Zed) {
			l.add(line, Error, fmt.Sprintf("[%s] is not a section oslo.messaging reads in %s: its options are silently ignored", s, l.cat.release), "move its options to [oslo_messaging_rabbit] or [oslo_messaging_notifications]")
		}
	}
}

// multiValued options may be written more than once.
var multiValued = map[string]bool{"backend_argument": true}

func (l *linter) options() {
	first := map[[2]string]int{}
	for _, a := range l.cfg.Assignments {
		g := l.cat.groups[a.Section]
		if g == nil {
			continue
		}
		where := fmt.Sprintf("[%s] %s", a.Section, a.Key)
		k := [2]string{a.Section, a.Key}
		if n, dup := first[k]; dup && !multiValued[a.Key] {
			l.add(a.Line, Warning, fmt.Sprintf("%s is set twice (lines %d and %d): the last value wins", where, n, a.Line), "keep one")
		} else if !dup {
			first[k] = a.Line
		}
		if strings.Contains(a.Value, " #") || strings.Contains(a.Value, "\t#") {
			l.add(a.Line, Warning, fmt.Sprintf("%s: oslo.config has no end-of-line comments, so the text after '#' is part of the value %q", where, a.Value), "put the comment on a line of its own")
		}
		o, ok := g.opts[a.Key]
		if !ok {
			names := g.names()
			near := nearest(a.Key, names, 3)
			if alt := strings.ReplaceAll(a.Key, "-", "_"); alt != a.Key && contains(names, alt) {
				near = alt
			}
			fix := "delete it"
			if near != "" {
				fix = "did you mean " + near + "?"
			}
			if hint := spellingAcrossReleases(l.cat.release, a.Section, a.Key); hint != "" {
				fix = hint
			}
			if g.complete || near != "" {
				l.add(a.Line, Error, fmt.Sprintf("%s is not an option OpenStack %s reads: oslo.config ignores unknown options silently, so this setting has no effect", where, l.cat.release), fix)
			}
			continue
		}
		switch o.status {
		case deprecated:
			fix := "delete it"
			if o.use != "" {
				fix = "write " + o.use + " instead"
			}
			l.add(a.Line, Warning, fmt.Sprintf("%s is deprecated in %s (%s)", where, l.cat.release, o.note), fix)
		case removed:
			fix := "delete it"
			if o.use != "" {
				fix = "use " + o.use
			}
			l.add(a.Line, Error, fmt.Sprintf("%s is no longer read in %s (%s): this setting has no effect", where, l.cat.release, o.note), fix)
		default:
			if o.note != "" {
				l.add(a.Line, Warning, fmt.Sprintf("%s has %s", where, o.note), "delete it; the HashClient's own value applies")
			}
		}
	}
}

// spellingAcrossReleases explains an option name that another release
// hastack knows reads: renamed (the old or the new spelling), or new.
func spellingAcrossReleases(release, section, key string) string {
	cur, _ := catalogFor(release)
	for _, other := range spec.OpenStackReleases {
		oc, _ := catalogFor(other)
		if other == release || oc.groups[section] == nil {
			continue
		}
		for n, o := range oc.groups[section].opts {
			if o.use == key && cur.groups[section].opts[n].status == known {
				return fmt.Sprintf("in %s the option is called %s", release, n)
			}
		}
		if o, ok := oc.groups[section].opts[key]; ok && o.status != removed {
			return fmt.Sprintf("%s is an option of OpenStack %s, not %s: set the release the service runs (spec.openstack.release or --release)", key, other, release)
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// value returns an option's value and line; ok is false when unset.
func (l *linter) value(section, key string) (string, int, bool) {
	a, ok := l.cfg.Get(section, key)
	return a.Value, a.Line, ok
}

// boolValue reads an oslo.config boolean; def applies when unset.
func (l *linter) boolValue(section, key string, def bool) (bool, int) {
	v, line, ok := l.value(section, key)
	if !ok {
		return def, 0
	}
	switch strings.ToLower(v) {
	case "true", "1", "on", "yes":
		return true, line
	case "false", "0", "off", "no":
		return false, line
	}
	l.add(line, Error, fmt.Sprintf("[%s] %s = %q is not a boolean: the service does not start", section, key, v), "write true or false")
	return def, line
}

// numberValue reads a number; def applies when unset or unreadable.
func (l *linter) numberValue(section, key string, def float64) (float64, int, bool) {
	v, line, ok := l.value(section, key)
	if !ok {
		return def, 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		l.add(line, Error, fmt.Sprintf("[%s] %s = %q is not a number: the service does not start", section, key, v), "write a number")
		return def, line, false
	}
	return f, line, true
}

// endpoint is one host:port of a server list, with the line it is on.
type endpoint struct {
	host string
	port int
}

func (e endpoint) String() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// parseTransportURL splits an oslo.messaging transport URL:
// driver://user:pass@host:port,user:pass@host:port/vhost?query.
func parseTransportURL(s string) (driver string, hosts []endpoint, err error) {
	driver, rest, ok := strings.Cut(s, "://")
	if !ok || driver == "" {
		return "", nil, fmt.Errorf("no driver:// prefix")
	}
	netloc := rest
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		netloc = rest[:i]
	}
	if netloc == "" {
		return driver, nil, nil
	}
	for _, h := range strings.Split(netloc, ",") {
		if i := strings.LastIndex(h, "@"); i >= 0 {
			h = h[i+1:]
		}
		host, port := h, 5672
		if hp, p, err := net.SplitHostPort(h); err == nil {
			n, err := strconv.Atoi(p)
			if err != nil {
				return driver, nil, fmt.Errorf("port of %q is not a number", h)
			}
			host, port = hp, n
		}
		if host == "" {
			return driver, nil, fmt.Errorf("a host is empty")
		}
		hosts = append(hosts, endpoint{host, port})
	}
	return driver, hosts, nil
}

// parseServerList reads host:port[,host:port...] (memcached lists).
func parseServerList(s string, defPort int) []endpoint {
	var out []endpoint
	for _, h := range strings.Split(s, ",") {
		h = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(h), "inet:"))
		if h == "" {
			continue
		}
		host, port := h, defPort
		if hp, p, err := net.SplitHostPort(h); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				host, port = hp, n
			}
		}
		out = append(out, endpoint{host, port})
	}
	return out
}

// controllerOf names the controller a host is (by address or name).
func (l *linter) controllerOf(host string) (spec.Node, bool) {
	if l.o.Cluster == nil {
		return spec.Node{}, false
	}
	for _, n := range l.o.Cluster.Controllers() {
		if n.Address == host || n.Name == host {
			return n, true
		}
	}
	return spec.Node{}, false
}

// compareWithCluster reports a server list that does not list exactly the
// cluster's servers of one kind.
func (l *linter) compareWithCluster(line int, what string, got []endpoint, port int) {
	c := l.o.Cluster
	if c == nil {
		return
	}
	seen := map[string]bool{}
	for _, e := range got {
		n, ok := l.controllerOf(e.host)
		if !ok {
			l.add(line, Error, fmt.Sprintf("%s lists %s, which is not a controller of cluster %s", what, e, c.Metadata.Name), "list the cluster's controllers: "+strings.Join(clusterList(c, port), ","))
			continue
		}
		if e.port != port {
			l.add(line, Error, fmt.Sprintf("%s lists %s on port %d; cluster %s serves it on %d", what, n.Name, e.port, c.Metadata.Name, port), fmt.Sprintf("use port %d", port))
		}
		seen[n.Name] = true
	}
	var missing []string
	for _, n := range c.Controllers() {
		if !seen[n.Name] {
			missing = append(missing, fmt.Sprintf("%s (%s)", n.Name, net.JoinHostPort(n.Address, strconv.Itoa(port))))
		}
	}
	if len(missing) > 0 {
		l.add(line, Error, fmt.Sprintf("%s lacks %s of cluster %s: a client never uses a server it does not list", what, strings.Join(missing, ", "), c.Metadata.Name), "list every controller: "+strings.Join(clusterList(c, port), ","))
	}
}

func clusterList(c *spec.Cluster, port int) []string {
	var out []string
	for _, n := range c.Controllers() {
		out = append(out, net.JoinHostPort(n.Address, strconv.Itoa(port)))
	}
	return out
}

func (l *linter) messaging() {
	rabbitLine := l.sectionLine("oslo_messaging_rabbit")
	tu, tuLine, hasTU := l.value("DEFAULT", "transport_url")
	if !hasTU {
		l.add(l.sectionLine("DEFAULT"), Error, "no [DEFAULT] transport_url: the service connects to rabbit://guest:guest@localhost:5672/, the library default", "transport_url = rabbit://user:pass@node1:5672,user:pass@node2:5672,user:pass@node3:5672/")
	}
	rabbitUsed := false
	check := func(section, value string, line int) {
		driver, hosts, err := parseTransportURL(value)
		if err != nil {
			l.add(line, Error, fmt.Sprintf("[%s] transport_url is not a transport URL (%v): the service does not start", section, err), "transport_url = rabbit://user:pass@node1:5672,user:pass@node2:5672/vhost")
			return
		}
		if driver != "rabbit" && !strings.HasPrefix(driver, "kombu") {
			return
		}
		rabbitUsed = true
		switch {
		case len(hosts) == 1:
			l.add(line, Error, fmt.Sprintf("[%s] transport_url lists a single RabbitMQ node (%s): when it fails, this service loses the bus until that node is back", section, hosts[0]), "list every node: rabbit://user:pass@node1:5672,user:pass@node2:5672,user:pass@node3:5672/vhost")
		case len(hosts) == 0:
			l.add(line, Error, fmt.Sprintf("[%s] transport_url lists no RabbitMQ node: the service connects to localhost", section), "list every node")
		}
		if c := l.o.Cluster; c != nil && len(hosts) > 0 {
			l.compareWithCluster(line, fmt.Sprintf("[%s] transport_url", section), hosts, c.Spec.RabbitMQ.Port)
		}
	}
	if hasTU {
		check("DEFAULT", tu, tuLine)
	}
	if v, line, ok := l.value("oslo_messaging_notifications", "transport_url"); ok {
		check("oslo_messaging_notifications", v, line)
	}
	if !rabbitUsed {
		return
	}

	quorum, qLine := l.boolValue("oslo_messaging_rabbit", "rabbit_quorum_queue", false)
	ha, haLine := l.boolValue("oslo_messaging_rabbit", "rabbit_ha_queues", false)
	durable, _ := l.boolValue("oslo_messaging_rabbit", "amqp_durable_queues", false)
	if quorum && ha {
		l.add(max(qLine, haLine), Error, "rabbit_quorum_queue and rabbit_ha_queues are both on: oslo.messaging refuses to declare any queue (RuntimeError), so RPC and notifications stop", "keep the one that matches the cluster's queue type and set the other to false")
	}
	if c := l.o.Cluster; c != nil {
		switch c.Spec.RabbitMQ.QueueType {
		case spec.QueueQuorum:
			if !quorum {
				l.add(lineOr(qLine, rabbitLine), Error, fmt.Sprintf("classic queues on cluster %s, whose queue type is quorum: each queue lives on one node and is lost with it", c.Metadata.Name), "rabbit_quorum_queue = true in [oslo_messaging_rabbit]")
			}
		case spec.QueueMirrored:
			if quorum {
				l.add(qLine, Error, fmt.Sprintf("quorum queues on cluster %s, which mirrors classic queues: every service must declare the same queue type, or the one that declares second is refused (PRECONDITION_FAILED)", c.Metadata.Name), "rabbit_quorum_queue = false and amqp_durable_queues = true")
			} else if !durable {
				l.add(rabbitLine, Warning, fmt.Sprintf("non-durable queues on cluster %s: mirrored, but lost when the whole cluster restarts", c.Metadata.Name), "amqp_durable_queues = true (delete the existing queues first)")
			}
		}
	}

	if l.cat.release == Zed {
		if d, line, _ := l.numberValue("oslo_messaging_rabbit", "kombu_reconnect_delay", 1); d >= 1 {
			what := fmt.Sprintf("kombu_reconnect_delay = %g", d)
			if line == 0 {
				what = "kombu_reconnect_delay is not set (default 1.0)"
				line = lineOr(0, rabbitLine)
				if !l.cfg.Has("oslo_messaging_rabbit") {
					line = tuLine
				}
			}
			l.add(line, Warning, fmt.Sprintf("%s: oslo.messaging 14 sleeps it on every pass of a connection's recovery loop, and a listener makes several passes before it leaves a dead broker (measured: no RPC call answered for 8-13 s after a broker kill; under 1 s with 0.1)", what), fmt.Sprintf("kombu_reconnect_delay = %g", reconnectDelay))
		}
	}

	hb, hbLine, set := l.numberValue("oslo_messaging_rabbit", "heartbeat_timeout_threshold", 60)
	fix := fmt.Sprintf("heartbeat_timeout_threshold = %d or less, with RabbitMQ's net_ticktime about as long", maxHeartbeat)
	if c := l.o.Cluster; c != nil {
		fix = fmt.Sprintf("heartbeat_timeout_threshold = %d (cluster %s's clientHeartbeat; its net_ticktime is %s)", HeartbeatThreshold(c), c.Metadata.Name, c.Spec.RabbitMQ.NetTickTime.Duration)
	}
	switch {
	case hb <= 0:
		l.add(hbLine, Error, "heartbeat_timeout_threshold = 0 turns heartbeats off: a frozen or cut-off broker is noticed only when TCP gives up, many minutes later", fix)
	case hb > maxHeartbeat:
		what := fmt.Sprintf("heartbeat_timeout_threshold = %g", hb)
		line := hbLine
		if !set {
			what = "heartbeat_timeout_threshold is not set (default 60)"
			line = lineOr(0, rabbitLine)
			if !l.cfg.Has("oslo_messaging_rabbit") {
				line = tuLine
			}
		}
		l.add(line, Warning, fmt.Sprintf("%s: a frozen or cut-off broker is given up after two heartbeat intervals without a frame, %g s, and calls stall meanwhile (the bound is %d s)", what, 2*hb, 2*maxHeartbeat), fix)
	}
}

func lineOr(line, def int) int {
	if line > 0 {
		return line
	}
	return def
}

// Bounds the linter holds a cache configuration to: those of hastack's
// failover targets (a cache call never stalls more than half a second; a
// memcached that is back serves its keys again within 30 s).
const (
	maxCacheTimeout   = 0.5
	maxCacheDeadRetry = 30
	// maxHeartbeat: a broker that hangs is given up within 10 s (twice the
	// threshold), the RPC bound.
	maxHeartbeat = 5
)

// unboundedBackends have no socket timeout a service can set, so a memcached
// that hangs or vanishes (no TCP reset) blocks calls until TCP gives up.
var unboundedBackends = map[string]string{
	"dogpile.cache.pymemcache": "dogpile.cache hands pymemcache no socket timeout in these releases",
	"dogpile.cache.memcached":  "python-memcached's own 3 s socket timeout cannot be set through oslo.cache",
	"dogpile.cache.pylibmc":    "libmemcached's timeouts cannot be set through oslo.cache",
	"dogpile.cache.bmemcached": "python-binary-memcached's socket timeout cannot be set through oslo.cache",
}

func (l *linter) cache() {
	if !l.cfg.Has("cache") {
		return
	}
	sec := l.sectionLine("cache")
	backend, bLine, hasBackend := l.value("cache", "backend")
	if !hasBackend {
		backend = "dogpile.cache.null"
	}
	if hasBackend && !contains(l.cat.cacheBackends, backend) {
		l.add(bLine, Error, fmt.Sprintf("[cache] backend %q is not a backend of OpenStack %s: oslo.config refuses the value and the service does not start", backend, l.cat.release), "backend = "+CacheBackend)
		return
	}
	enabled, _ := l.boolValue("cache", "enabled", false)
	if !enabled {
		return
	}
	const fix = "backend = " + CacheBackend + " with a socket timeout of 0.5 s or less and memcache_dead_retry = 30 or less (hastack render writes them)"
	if why, ok := unboundedBackends[backend]; ok {
		l.add(lineOr(bLine, sec), Warning, fmt.Sprintf("[cache] backend %s: %s, so a memcached that hangs or vanishes (no TCP reset) blocks a call for tens of seconds to minutes (measured 42-153 s)", backend, why), fix)
	} else if backend != CacheBackend {
		return
	}
	servers, sLine, ok := l.value("cache", "memcache_servers")
	if !ok {
		l.add(sec, Error, "[cache] memcache_servers is not set: every process caches in localhost:11211 alone, so controllers disagree about cached data", "memcache_servers = every controller's memcached, host:11211,...")
	} else {
		list := parseServerList(servers, 11211)
		if len(list) == 1 {
			l.add(sLine, Warning, fmt.Sprintf("[cache] memcache_servers lists a single memcached (%s): when it fails, every key is a miss", list[0]), "list every controller's memcached")
		}
		if c := l.o.Cluster; c != nil {
			l.compareWithCluster(sLine, "[cache] memcache_servers", list, c.Spec.Memcached.Port)
		}
	}
	if backend != CacheBackend {
		return
	}
	timeoutKey := "memcache_socket_timeout"
	if l.cat.release != Zed {
		if _, _, ok := l.value("cache", "socket_timeout"); ok {
			timeoutKey = "socket_timeout"
		}
	}
	if t, line, set := l.numberValue("cache", timeoutKey, 3); t > maxCacheTimeout || t <= 0 {
		what := fmt.Sprintf("%s = %g", timeoutKey, t)
		if !set {
			what = timeoutKey + " is not set (default 3)"
		}
		if t <= 0 {
			l.add(lineOr(line, sec), Error, fmt.Sprintf("[cache] %s: a cache call to a memcached that hangs waits for ever", what), fix)
		} else {
			l.add(lineOr(line, sec), Warning, fmt.Sprintf("[cache] %s: every call to a memcached that hangs or vanished stalls the request %g s (the bound is %g s)", what, t, maxCacheTimeout), fix)
		}
	}
	if d, line, set := l.numberValue("cache", "memcache_dead_retry", 300); d > maxCacheDeadRetry {
		what := fmt.Sprintf("memcache_dead_retry = %g", d)
		if !set {
			what = "memcache_dead_retry is not set (default 300)"
		}
		l.add(lineOr(line, sec), Warning, fmt.Sprintf("[cache] %s: a memcached that is back serves its keys again only %g s after it was taken for dead; meanwhile they are misses (the bound is %d s)", what, d, maxCacheDeadRetry), fix)
	}
}

func (l *linter) authtoken() {
	if !l.cfg.Has("keystone_authtoken") {
		return
	}
	sec := l.sectionLine("keystone_authtoken")
	servers, sLine, ok := l.value("keystone_authtoken", "memcached_servers")
	if !ok {
		servers, sLine, ok = l.value("keystone_authtoken", "memcache_servers")
	}
	if !ok {
		l.add(sec, Warning, "[keystone_authtoken] memcached_servers is not set: validated tokens are cached per process only, so every worker asks keystone again", "memcached_servers = every controller's memcached")
		return
	}
	list := parseServerList(servers, 11211)
	if len(list) == 1 {
		l.add(sLine, Warning, fmt.Sprintf("[keystone_authtoken] memcached_servers lists a single memcached (%s): when it fails, every request validates its token with keystone", list[0]), "list every controller's memcached")
	}
	if c := l.o.Cluster; c != nil {
		l.compareWithCluster(sLine, "[keystone_authtoken] memcached_servers", list, c.Spec.Memcached.Port)
	}
	if t, line, _ := l.numberValue("keystone_authtoken", "memcache_pool_socket_timeout", 3); t > 1 {
		what := fmt.Sprintf("memcache_pool_socket_timeout = %g", t)
		if line == 0 {
			what = "memcache_pool_socket_timeout is not set (default 3)"
		}
		l.add(lineOr(line, sLine), Warning, fmt.Sprintf("[keystone_authtoken] %s: every API request validates its token in memcached, so a frozen or unreachable memcached stalls requests %g s each", what, t), fmt.Sprintf("memcache_pool_socket_timeout = %d", authtokenTimeout))
	}
	if d, line, set := l.numberValue("keystone_authtoken", "memcache_pool_dead_retry", 300); d > maxCacheDeadRetry {
		what := fmt.Sprintf("memcache_pool_dead_retry = %g", d)
		if !set {
			what = "memcache_pool_dead_retry is not set (default 300)"
		}
		l.add(lineOr(line, sLine), Warning, fmt.Sprintf("[keystone_authtoken] %s: a memcached that is back holds tokens again only %g s after it was taken for dead (the bound is %d s)", what, d, maxCacheDeadRetry), fmt.Sprintf("memcache_pool_dead_retry = %d or less", maxCacheDeadRetry))
	}
	l.tokenSecurity(sLine)
}

// tokenSecurity: keystonemiddleware caches validated tokens in memcached,
// which anyone on the management network can read and write; only
// ENCRYPT keeps the tokens secret.
func (l *linter) tokenSecurity(serversLine int) {
	strategy, line, ok := l.value("keystone_authtoken", "memcache_security_strategy")
	strategy = strings.ToUpper(strings.TrimSpace(strategy))
	const fix = "memcache_security_strategy = ENCRYPT and memcache_secret_key = a secret shared by every service (hastack render writes both)"
	switch {
	case !ok || strategy == "" || strategy == "NONE":
		l.add(lineOr(line, serversLine), Warning, "[keystone_authtoken] caches tokens in memcached without memcache_security_strategy: every validated token sits there in plain text, readable and writable by anyone on the management network", fix)
		return
	case strategy == "MAC":
		l.add(line, Warning, "[keystone_authtoken] memcache_security_strategy = MAC signs the cached tokens but leaves them readable by anyone on the management network", fix)
	case strategy != "ENCRYPT":
		l.add(line, Error, fmt.Sprintf("[keystone_authtoken] memcache_security_strategy = %q is neither MAC nor ENCRYPT: keystonemiddleware refuses to start", strategy), fix)
		return
	}
	if key, _, ok := l.value("keystone_authtoken", "memcache_secret_key"); !ok || strings.TrimSpace(key) == "" {
		l.add(line, Error, "[keystone_authtoken] memcache_security_strategy is set without memcache_secret_key: keystonemiddleware refuses to start", fix)
	}
}

func (l *linter) databases() {
	for _, section := range []string{"database", "api_database"} {
		v, line, ok := l.value(section, "connection")
		if !ok {
			continue
		}
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" {
			l.add(line, Error, fmt.Sprintf("[%s] connection is not a database URL: the service does not start", section), "connection = mysql+pymysql://user:pass@endpoint:3306/db")
			continue
		}
		if strings.HasPrefix(u.Scheme, "sqlite") {
			l.add(line, Error, fmt.Sprintf("[%s] connection is SQLite: every controller would have its own database", section), "use the cluster's database endpoint: mysql+pymysql://user:pass@endpoint:3306/db")
			continue
		}
		host, port := u.Hostname(), 3306
		if p := u.Port(); p != "" {
			port, _ = strconv.Atoi(p)
		}
		c := l.o.Cluster
		if c == nil {
			if l.listedAsServer(host) {
				l.add(line, Error, fmt.Sprintf("[%s] connection points at %s, which this file also lists as a RabbitMQ or memcached node: one controller, not the database endpoint; when it fails the service loses its database though the cluster survives", section, host), "connect through the endpoint's virtual IP")
			}
			continue
		}
		e := c.Spec.Database.Endpoint
		if n, ok := l.controllerOf(host); ok {
			l.add(line, Error, fmt.Sprintf("[%s] connection points at %s, one controller (%s), not cluster %s's database endpoint: when it fails the service loses its database though the cluster survives", section, host, n.Name, c.Metadata.Name), fmt.Sprintf("connect to %s", net.JoinHostPort(e.VIP, strconv.Itoa(e.Port))))
			continue
		}
		if host != e.VIP {
			l.add(line, Warning, fmt.Sprintf("[%s] connection points at %s, which is not cluster %s's database endpoint %s", section, host, c.Metadata.Name, e.VIP), fmt.Sprintf("connect to %s (or make sure %s names it)", net.JoinHostPort(e.VIP, strconv.Itoa(e.Port)), host))
		} else if port != e.Port {
			l.add(line, Error, fmt.Sprintf("[%s] connection uses port %d; cluster %s's endpoint listens on %d", section, port, c.Metadata.Name, e.Port), fmt.Sprintf("use port %d", e.Port))
		}
		if r, rLine, _ := l.numberValue(section, "connection_recycle_time", 3600); r >= 3600 {
			l.add(lineOr(rLine, line), Warning, fmt.Sprintf("[%s] connection_recycle_time = %g is not below the endpoint's HAProxy timeout (3600 s): a pooled connection idle that long is cut, and the next request on it fails", section, r), fmt.Sprintf("connection_recycle_time = %d", recycleTime))
		}
	}
}

// listedAsServer reports whether host appears in the file's RabbitMQ or
// memcached lists: a controller, which is never the database endpoint.
func (l *linter) listedAsServer(host string) bool {
	if v, _, ok := l.value("DEFAULT", "transport_url"); ok {
		if _, hosts, err := parseTransportURL(v); err == nil {
			for _, h := range hosts {
				if h.host == host {
					return true
				}
			}
		}
	}
	for _, k := range [][2]string{{"cache", "memcache_servers"}, {"keystone_authtoken", "memcached_servers"}} {
		if v, _, ok := l.value(k[0], k[1]); ok {
			for _, h := range parseServerList(v, 11211) {
				if h.host == host {
					return true
				}
			}
		}
	}
	return false
}

// nearest returns the candidate closest to s within maxDist edits, or "".
func nearest(s string, candidates []string, maxDist int) string {
	best, bestD := "", maxDist+1
	for _, c := range candidates {
		if d := spec.EditDistance(s, c); d < bestD && d > 0 {
			best, bestD = c, d
		}
	}
	return best
}
