package render

import (
	"bytes"
	"flag"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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

func TestComputeGetsOnlyTime(t *testing.T) {
	c := load(t, "testdata/cluster.yaml")
	n, _ := c.Node("cmp1")
	nf, err := Node(c, n, secrets.Fixed{})
	if err != nil {
		t.Fatal(err)
	}
	files := nf.All()
	if len(files) != 1 || files[0].Path != "/etc/chrony/chrony.conf" {
		t.Fatalf("compute files: %+v", files)
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
			check := func(path string, argv ...string) {
				t.Helper()
				full := filepath.Join(root, path)
				if _, err := os.Stat(full); err != nil {
					return // not rendered for this node
				}
				for i := range argv {
					argv[i] = strings.ReplaceAll(argv[i], "FILE", full)
				}
				if _, err := exec.LookPath(argv[0]); err != nil {
					t.Fatalf("%s is not installed: run scripts/install-deps", argv[0])
				}
				out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
				if err != nil {
					t.Errorf("%s %s: %s rejects it: %v\n%s", specFile, nf.Node.Name, argv[0], err, out)
				}
				if argv[0] == "keepalived" && len(bytes.TrimSpace(out)) > 0 {
					t.Errorf("%s %s: keepalived warns:\n%s", specFile, nf.Node.Name, out)
				}
			}
			check("etc/chrony/chrony.conf", "chronyd", "-p", "-f", "FILE")
			check("etc/haproxy/haproxy.cfg", "haproxy", "-c", "-q", "-f", "FILE")
			check("etc/keepalived/keepalived.conf", "keepalived", "-t", "-f", "FILE")
			check("etc/mysql/mariadb.conf.d/99-hastack.cnf", "mariadbd", "--defaults-file=FILE", "--help", "--verbose")
		}
	}
}
