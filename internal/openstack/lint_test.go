package openstack

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/spec"
)

type expectation struct {
	line int
	sev  string
	text string
}

// fixtureHeader reads a lint fixture's '# release: R', '# cluster: NAME'
// (testdata/NAME.yaml) and '# expect: LINE SEVERITY TEXT' lines.
func fixtureHeader(t *testing.T, data []byte) (release, cluster string, exp []expectation) {
	t.Helper()
	release = Zed
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "# release: "); ok {
			release = v
		}
		if v, ok := strings.CutPrefix(line, "# cluster: "); ok {
			cluster = v
		}
		if v, ok := strings.CutPrefix(line, "# expect: "); ok {
			f := strings.SplitN(v, " ", 3)
			n, err := strconv.Atoi(f[0])
			if err != nil || len(f) != 3 {
				t.Fatalf("bad expectation %q", line)
			}
			exp = append(exp, expectation{n, f[1], f[2]})
		}
	}
	return release, cluster, exp
}

// TestLintFixtures: each file of testdata/lint yields exactly the
// warnings and errors its header expects.
func TestLintFixtures(t *testing.T) {
	files, _ := filepath.Glob("testdata/lint/*")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			release, cluster, exp := fixtureHeader(t, data)
			if len(exp) == 0 {
				t.Fatal("fixture expects nothing")
			}
			o := LintOptions{Release: release}
			if cluster != "" {
				o.Cluster = loadSpec(t, filepath.Join("testdata", cluster+".yaml"))
			}
			got := Lint(filepath.Base(f), data, o)
			matched := make([]bool, len(got))
			for _, e := range exp {
				ok := false
				for i, g := range got {
					if g.Line == e.line && g.Severity.String() == e.sev && strings.Contains(g.String(), e.text) {
						ok, matched[i] = true, true
					}
				}
				if !ok {
					t.Errorf("missing: line %d %s %q", e.line, e.sev, e.text)
				}
			}
			for i, g := range got {
				if !matched[i] && g.Severity != Info {
					t.Errorf("unexpected: %s", g)
				}
			}
			if t.Failed() {
				for _, g := range got {
					t.Logf("got: %s", g)
				}
			}
		})
	}
}

// TestLintBadInput: whatever the bytes, Lint returns findings, never
// panics, and says what is wrong.
func TestLintBadInput(t *testing.T) {
	cases := map[string][]byte{
		"binary":      {0x7f, 'E', 'L', 'F', 0, 0, 1, 0},
		"empty":       {},
		"latin1":      []byte("[DEFAULT]\ntransport_url = caf\xe9\n"),
		"only-spaces": []byte("   \n\t\n"),
		"crlf":        []byte("[DEFAULT]\r\ntransport_url = rabbit://a:b@h1:5672,a:b@h2:5672/\r\n[oslo_messaging_rabbit]\r\nheartbeat_timeout_threshold = 4\r\nkombu_reconnect_delay = 0.1\r\n"),
		"bad-url":     []byte("[DEFAULT]\ntransport_url = rabbit://h1:notaport/\n"),
		"bad-number":  []byte("[DEFAULT]\ntransport_url = rabbit://h1,h2/\n[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = ten\n"),
		"bad-db-url":  []byte("[DEFAULT]\ntransport_url = rabbit://h1,h2/\n[database]\nconnection = ://nope\n"),
	}
	want := map[string]string{
		"binary":      "not a text file",
		"empty":       "not an OpenStack service config",
		"latin1":      "not a text file",
		"only-spaces": "not an OpenStack service config",
		"bad-url":     "port of \"h1:notaport\" is not a number",
		"bad-number":  "\"ten\" is not a number",
		"bad-db-url":  "[database] connection is not a database URL",
	}
	for name, data := range cases {
		fs := Lint(name, data, LintOptions{Release: Zed})
		if w, ok := want[name]; ok {
			found := false
			for _, f := range fs {
				found = found || (f.Severity == Error && strings.Contains(f.Message, w))
			}
			if !found {
				t.Errorf("%s: no error saying %q; got %v", name, w, fs)
			}
		}
		if name == "crlf" {
			for _, f := range fs {
				if f.Severity != Info {
					t.Errorf("crlf: %s", f)
				}
			}
		}
	}
	if fs := Lint("x.conf", []byte("[DEFAULT]\n"), LintOptions{Release: "grizzly"}); len(fs) != 1 || fs[0].Severity != Error {
		t.Errorf("unknown release: %v", fs)
	}
}

func TestParseConfigFollowsOsloConfig(t *testing.T) {
	c, err := ParseConfig([]byte("[DEFAULT]\nkey: a = b\nq = \"quoted\"\nmulti = one\n  two\n\n[Cache]\n; comment\nx=1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := c.Get("DEFAULT", "key"); a.Value != "a = b" {
		t.Errorf("the first of ':' and '=' separates: %q", a.Value)
	}
	if a, _ := c.Get("DEFAULT", "q"); a.Value != "quoted" {
		t.Errorf("quotes: %q", a.Value)
	}
	if a, _ := c.Get("DEFAULT", "multi"); a.Value != "one\ntwo" {
		t.Errorf("continuation: %q", a.Value)
	}
	if a, ok := c.Get("cache", "x"); !ok || a.Line != 9 {
		t.Errorf("group names are case-insensitive: %+v %v", a, ok)
	}
}

func TestLevenshtein(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "abc", 3}, {"rabbit_quorum_queues", "rabbit_quorum_queue", 1}, {"kitten", "sitting", 3}} {
		if got := spec.EditDistance(c.a, c.b); got != c.d {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.d)
		}
	}
}

// No finding ever prints a credential, whichever check made it: values
// quoted whole (an end-of-line comment), URLs with passwords, and options
// that hold secrets.
func TestLintMasksCredentials(t *testing.T) {
	const pw1, pw2, pw3, pw4 = "Sup3rSecretRabbit", "DbPassw0rdXYZ", "AuthPassQQQ", "CacheKeyZZZ"
	conf := "[DEFAULT]\n" +
		"transport_url = rabbit://openstack:" + pw1 + "@h1:5672,openstack:" + pw1 + "@h2:5672/ # two hosts\n" +
		"[database]\n" +
		"connection = mysql+pymysql://nova:" + pw2 + "@10.0.0.1/nova # the VIP\n" +
		"connection = mysql+pymysql://nova:" + pw2 + "@10.0.0.1/nova\n" +
		"[keystone_authtoken]\n" +
		"password = " + pw3 + " # service user\n" +
		"memcache_secret_key = " + pw4 + " #x\n" +
		"[cache]\n" +
		"backend_argument = url:mysql://u:" + pw2 + "@h #y\n"
	fs := Lint("nova.conf", []byte(conf), LintOptions{Release: Zed})
	if len(fs) == 0 {
		t.Fatal("no findings: the fixture must make some (end-of-line comments, one server)")
	}
	quoted := 0
	for _, f := range fs {
		s := f.String()
		for _, pw := range []string{pw1, pw2, pw3, pw4} {
			if strings.Contains(s, pw) {
				t.Errorf("finding prints a credential: %s", s)
			}
		}
		if strings.Contains(s, masked) {
			quoted++
		}
	}
	if quoted == 0 {
		t.Errorf("no finding quotes a masked value; the fixture should make some:\n%v", fs)
	}
	// A file oslo.config cannot parse is quoted in the error too.
	bad := Lint("x.conf", []byte("[DEFAULT]\ntransport_url rabbit://u:"+pw1+"@h1\n"), LintOptions{Release: Zed})
	for _, f := range bad {
		if strings.Contains(f.String(), pw1) {
			t.Errorf("parse error prints a credential: %s", f)
		}
	}
}
