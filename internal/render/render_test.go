package render

import (
	"bytes"
	"context"
	"flag"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/engine/memcached"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func load(t testing.TB, path string) *spec.Cluster {
	t.Helper()
	c, ps, err := spec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGolden compares every rendered file with testdata/golden/<node>/<path>.
func TestGolden(t *testing.T) {
	c := load(t, "testdata/cluster.yaml")
	nodes, err := Cluster(c, secrets.Fixed{})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "golden")
	if *update {
		os.RemoveAll(golden)
		if err := WriteTree(golden, nodes); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, nf := range nodes {
		for _, f := range nf.All() {
			p := filepath.Join(golden, nf.Node.Name, f.Path)
			seen[p] = true
			want, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("%s: no golden file (run go test ./internal/render -update): %v", p, err)
				continue
			}
			if !bytes.Equal(want, f.Content) {
				t.Errorf("%s differs from the golden file (run go test ./internal/render -update and review the diff)\n--- got ---\n%s", p, f.Content)
			}
		}
	}
	filepath.WalkDir(golden, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !seen[p] {
			t.Errorf("%s is golden but no longer rendered", p)
		}
		return nil
	})
}

// TestSecretsOnlyWhereNeeded checks that a secret appears only in files
// marked secret, and that those are mode 0600.
func TestSecretsOnlyWhereNeeded(t *testing.T) {
	c := load(t, "testdata/cluster.yaml")
	s := secrets.Fixed{}
	nodes, err := Cluster(c, s)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{secrets.ErlangCookie, secrets.RabbitAdminPassword, secrets.RabbitServicePassword, secrets.DatabaseAdminPassword}
	secretFiles := 0
	for _, nf := range nodes {
		for _, f := range nf.All() {
			has := false
			for _, n := range names {
				if bytes.Contains(f.Content, []byte(s.Get(n))) {
					has = true
				}
			}
			if f.Secret {
				secretFiles++
				if f.Mode != 0o600 {
					t.Errorf("%s:%s holds a secret with mode %04o", nf.Node.Name, f.Path, f.Mode)
				}
			}
			if has && !f.Secret {
				t.Errorf("%s:%s contains a secret but is not marked secret", nf.Node.Name, f.Path)
			}
		}
	}
	if secretFiles == 0 {
		t.Error("no secret file rendered: the Erlang cookie must be placed")
	}
}

func TestComputeGetsOnlyTimeAndNeighbour(t *testing.T) {
	c := load(t, "testdata/cluster.yaml")
	n, _ := c.Node("cmp1")
	nf, err := Node(c, n, secrets.Fixed{})
	if err != nil {
		t.Fatal(err)
	}
	files := nf.All()
	if len(files) != 2 || files[0].Path != "/etc/chrony/chrony.conf" || files[1].Path != "/etc/sysctl.d/60-hastack-neighbour.conf" {
		var paths []string
		for _, f := range files {
			paths = append(paths, f.Path)
		}
		t.Fatalf("compute files: %v, want chrony.conf and the neighbour timers", paths)
	}
	conf := string(files[0].Content)
	for _, ctl := range c.Controllers() {
		if !strings.Contains(conf, "server "+ctl.Address+" iburst") {
			t.Errorf("compute chrony does not follow controller %s", ctl.Name)
		}
	}
	if strings.Contains(conf, "ntp1.example.net") {
		t.Error("compute follows the upstream servers directly; the document says it follows the controllers")
	}
}

func TestSingleController(t *testing.T) {
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "one", Controllers: 1})
	if err != nil {
		t.Fatal(err)
	}
	c, ps := spec.Parse(data)
	if err := ps.Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := Cluster(c, secrets.Fixed{}); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationEnginesAcceptRenderedConfig feeds the rendered files to the
// engines' own parsers.
func TestIntegrationEnginesAcceptRenderedConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: needs the engines' packages (chrony, haproxy, keepalived, mariadb-server); runs without -short")
	}
	one, err := spec.ExampleYAML(spec.ExampleOptions{Name: "one", Controllers: 1})
	if err != nil {
		t.Fatal(err)
	}
	oneFile := filepath.Join(t.TempDir(), "one.yaml")
	if err := os.WriteFile(oneFile, one, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, specFile := range []string{"testdata/cluster.yaml", "../spec/testdata/valid-4ctl-mirrored.yaml", "../spec/testdata/valid-2ctl-warnings.yaml", oneFile} {
		c := load(t, specFile)
		nodes, err := Cluster(c, secrets.Fixed{})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := WriteTree(dir, nodes); err != nil {
			t.Fatal(err)
		}
		for _, nf := range nodes {
			root := filepath.Join(dir, nf.Node.Name)
			controller := nf.Node.Role == spec.RoleController
			// A file is checked where the node's role needs it, and must
			// be absent where it does not: a missing file is a failure,
			// not a reason to skip.
			check := func(path string, need bool, argv ...string) {
				t.Helper()
				full := filepath.Join(root, path)
				_, err := os.Stat(full)
				switch {
				case err != nil && need:
					t.Errorf("%s %s: %s not rendered", specFile, nf.Node.Name, path)
					return
				case err == nil && !need:
					t.Errorf("%s %s: %s rendered, but a %s does not run it", specFile, nf.Node.Name, path, nf.Node.Role)
					return
				case err != nil:
					return
				}
				for i := range argv {
					argv[i] = strings.ReplaceAll(argv[i], "FILE", full)
					argv[i] = strings.ReplaceAll(argv[i], "ROOT", root)
				}
				if _, err := exec.LookPath(argv[0]); err != nil {
					t.Fatalf("%s is not installed: run scripts/install-deps", argv[0])
				}
				out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
				if err != nil {
					t.Errorf("%s %s: %s rejects %s: %v\n%s", specFile, nf.Node.Name, argv[0], path, err, out)
				}
				if argv[0] == "keepalived" && len(bytes.TrimSpace(out)) > 0 {
					t.Errorf("%s %s: keepalived warns:\n%s", specFile, nf.Node.Name, out)
				}
			}
			check("etc/chrony/chrony.conf", true, "chronyd", "-p", "-f", "FILE")
			check("etc/haproxy/haproxy.cfg", controller, "haproxy", "-c", "-q", "-f", "FILE")
			check("etc/keepalived/keepalived.conf", controller, "keepalived", "-t", "-f", "FILE")
			check("etc/mysql/mariadb.conf.d/99-hastack.cnf", controller, "mariadbd", "--defaults-file=FILE", "--help", "--verbose")
			// RabbitMQ's own parsers: cuttlefish with the schemas of
			// RabbitMQ and the enabled plugins (the rendered definitions
			// file is where rabbitmq.conf says it is), and Erlang's
			// file:consult for advanced.config and enabled_plugins.
			check("etc/rabbitmq/rabbitmq.conf", controller, append(append([]string{"erl", "-noshell"}, rabbitCodePath(t)...), "-eval", cuttlefishCheck(t, root))...)
			check("etc/rabbitmq/advanced.config", controller, "erl", "-noshell", "-eval", `case file:consult("FILE") of {ok, [L]} when is_list(L) -> halt(0); E -> io:format("~p~n", [E]), halt(1) end.`)
			check("etc/rabbitmq/enabled_plugins", controller, "erl", "-noshell", "-eval", `case file:consult("FILE") of {ok, [L]} when is_list(L) -> halt(0); E -> io:format("~p~n", [E]), halt(1) end.`)
			// memcached parses its options when it starts: the rendered
			// file's options, on a loopback port, must start it.
			if controller {
				memcachedStarts(t, filepath.Join(root, "etc/memcached.conf"))
			}
		}
	}
}

// rabbitPlugin is the folder of a RabbitMQ plugin (or library) shipped
// with Debian's rabbitmq-server.
func rabbitPlugin(t *testing.T, name string) string {
	t.Helper()
	m, _ := filepath.Glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/" + name + "-*")
	if len(m) == 0 {
		t.Fatalf("RabbitMQ's %s is not installed: run scripts/install-deps", name)
	}
	return m[len(m)-1]
}

// rabbitCodePath puts the code of cuttlefish and of RabbitMQ's
// applications (its schemas' translations call into them) on erl's path.
func rabbitCodePath(t *testing.T) []string {
	t.Helper()
	args := []string{"-pa"}
	for _, p := range []string{"cuttlefish", "rabbit", "rabbit_common", "rabbitmq_prelaunch", "rabbitmq_management", "rabbitmq_management_agent"} {
		args = append(args, rabbitPlugin(t, p)+"/ebin")
	}
	return args
}

// cuttlefishCheck is an Erlang expression that maps the node's
// rabbitmq.conf through the schemas of RabbitMQ and its management
// plugin, as the broker does at boot, and exits 1 on any error. The file
// names the definitions at their place on a node; it is read from the
// rendered tree instead.
func cuttlefishCheck(t *testing.T, root string) string {
	t.Helper()
	conf, err := os.ReadFile(filepath.Join(root, "etc/rabbitmq/rabbitmq.conf"))
	if err != nil {
		return "halt(1)."
	}
	local := filepath.Join(t.TempDir(), "rabbitmq.conf")
	conf = bytes.ReplaceAll(conf, []byte("/etc/rabbitmq/definitions.json"), []byte(filepath.Join(root, "etc/rabbitmq/definitions.json")))
	if err := os.WriteFile(local, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	var schemas []string
	for _, p := range []string{"rabbit", "rabbitmq_management", "rabbitmq_management_agent"} {
		m, _ := filepath.Glob(rabbitPlugin(t, p) + "/priv/schema/*.schema")
		for _, f := range m {
			schemas = append(schemas, `"`+f+`"`)
		}
	}
	return `Schema = cuttlefish_schema:files([` + strings.Join(schemas, ",") + `]),
Conf = cuttlefish_conf:file("` + local + `"),
case Conf of {errorlist, _} -> io:format("~p~n", [Conf]), halt(1); _ -> ok end,
case cuttlefish_generator:map(Schema, Conf) of {error, _, _} = E -> io:format("~p~n", [E]), halt(1); _ -> halt(0) end.`
}

// memcachedStarts runs memcached with the options of a rendered
// memcached.conf (as the memcached phase does), moved to a free loopback
// port, and checks that it answers with the configured limits.
func memcachedStarts(t *testing.T, confPath string) {
	t.Helper()
	conf, err := os.ReadFile(confPath)
	if err != nil {
		t.Errorf("memcached.conf: %v", err)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	argv := memcached.Service(conf).Argv
	var maxConns string
	for i := 1; i < len(argv)-1; i++ {
		switch argv[i] {
		case "-l":
			argv[i+1] = "127.0.0.1"
		case "-p":
			argv[i+1] = port
		case "-m":
			argv[i+1] = "16" // the machine need not have the production size
		case "-c":
			maxConns = argv[i+1]
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() { cmd.Process.Kill(); <-exited }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		st, err := memcached.Probe(ctx, addr)
		if err == nil {
			if maxConns != "" && strconv.FormatInt(st.MaxConnections, 10) != maxConns {
				t.Errorf("memcached from %s: max connections %d, the file says %s", confPath, st.MaxConnections, maxConns)
			}
			return
		}
		select {
		case <-exited:
			t.Errorf("memcached with the options of %s exited: %v\n%s", confPath, err, out.String())
			return
		case <-ctx.Done():
			t.Errorf("memcached with the options of %s does not answer: %v\n%s", confPath, err, out.String())
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}
