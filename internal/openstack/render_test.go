package openstack

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func loadSpec(t testing.TB, path string) *spec.Cluster {
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

// TestGolden compares each rendered service config with
// testdata/golden/<spec>/<service>.conf: a quorum cluster on zed and a
// mirrored one on 2026.1.
func TestGolden(t *testing.T) {
	for _, name := range []string{"quorum", "mirrored"} {
		c := loadSpec(t, filepath.Join("testdata", name+".yaml"))
		files, err := Render(c, secrets.Fixed{})
		if err != nil {
			t.Fatal(err)
		}
		if len(files) != len(services) {
			t.Fatalf("%s: %d files, want %d", name, len(files), len(services))
		}
		dir := filepath.Join("testdata", "golden", name)
		if *update {
			os.RemoveAll(dir)
			if err := WriteFiles(dir, files); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range files {
			if f.Mode != 0o600 || !f.Secret {
				t.Errorf("%s: mode %04o secret %v: it holds passwords", f.Path, f.Mode, f.Secret)
			}
			p := filepath.Join(dir, f.Path)
			want, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("%s: no golden file (run go test ./internal/openstack -update): %v", p, err)
				continue
			}
			if !bytes.Equal(want, f.Content) {
				t.Errorf("%s differs from the golden file (run go test ./internal/openstack -update and review the diff)\n--- got ---\n%s", p, f.Content)
			}
		}
	}
}

// TestRenderedFilesLintClean: what hastack renders, its own linter accepts
// without an error or warning, against the cluster it was rendered for.
func TestRenderedFilesLintClean(t *testing.T) {
	for _, name := range []string{"quorum", "mirrored"} {
		c := loadSpec(t, filepath.Join("testdata", name+".yaml"))
		files, err := Render(c, secrets.Fixed{secrets.RabbitServicePassword: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			fs := Lint(f.Path, f.Content, LintOptions{Release: c.Spec.OpenStack.Release, Cluster: c})
			for _, x := range fs {
				if x.Severity != Info {
					t.Errorf("%s/%s: %s", name, f.Path, x)
				}
			}
		}
	}
}

// TestRenderedOptionsInCatalogue: every option written is one the release
// reads, under its current (not deprecated) name.
func TestRenderedOptionsInCatalogue(t *testing.T) {
	for _, release := range spec.OpenStackReleases {
		cat, ok := catalogFor(release)
		if !ok {
			t.Fatalf("no catalogue for %s", release)
		}
		c := loadSpec(t, "testdata/quorum.yaml")
		c.Spec.OpenStack.Release = release
		files, err := Render(c, secrets.Fixed{})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			cfg, err := ParseConfig(f.Content)
			if err != nil {
				t.Fatalf("%s %s: %v", release, f.Path, err)
			}
			for _, a := range cfg.Assignments {
				g := cat.groups[a.Section]
				if g == nil {
					t.Errorf("%s %s: section [%s] not in the catalogue", release, f.Path, a.Section)
					continue
				}
				o, ok := g.opts[a.Key]
				if !ok || o.status != known || o.note != "" {
					t.Errorf("%s %s: [%s] %s is not a current, effective option of the release", release, f.Path, a.Section, a.Key)
				}
			}
		}
	}
}

func TestRenderContent(t *testing.T) {
	c := loadSpec(t, "testdata/quorum.yaml")
	files, err := Render(c, secrets.Fixed{secrets.RabbitServicePassword: "p@ss/word", DatabasePasswordSecret("nova"): "dbpw"})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*Config{}
	for _, f := range files {
		cfg, err := ParseConfig(f.Content)
		if err != nil {
			t.Fatal(err)
		}
		byName[strings.TrimSuffix(filepath.Base(f.Path), ".conf")] = cfg
	}
	nova := byName["nova"]
	tu, _ := nova.Get("DEFAULT", "transport_url")
	if want := "rabbit://openstack:p%40ss%2Fword@10.77.0.11:5672,openstack:p%40ss%2Fword@10.77.0.12:5672,openstack:p%40ss%2Fword@10.77.0.13:5672/"; tu.Value != want {
		t.Errorf("transport_url %q, want %q (escaped password, every controller, default vhost)", tu.Value, want)
	}
	db, _ := nova.Get("database", "connection")
	if db.Value != "mysql+pymysql://nova:dbpw@10.77.0.10:3306/nova?charset=utf8" {
		t.Errorf("nova database: %q", db.Value)
	}
	if api, _ := nova.Get("api_database", "connection"); !strings.HasSuffix(api.Value, "/nova_api?charset=utf8") {
		t.Errorf("nova api_database: %q", api.Value)
	}
	mc, _ := nova.Get("cache", "memcache_servers")
	if mc.Value != "10.77.0.11:11211,10.77.0.12:11211,10.77.0.13:11211" {
		t.Errorf("memcache_servers %q", mc.Value)
	}
	for name, cfg := range byName {
		_, hasNotif := cfg.Sections["oslo_messaging_notifications"]
		if want := name != "ceilometer"; hasNotif != want {
			t.Errorf("%s: [oslo_messaging_notifications] present %v, want %v", name, hasNotif, want)
		}
		_, hasAuth := cfg.Sections["keystone_authtoken"]
		if want := slices.Contains([]string{"nova", "cinder", "neutron"}, name); hasAuth != want {
			t.Errorf("%s: [keystone_authtoken] present %v, want %v", name, hasAuth, want)
		}
		q, _ := cfg.Get("oslo_messaging_rabbit", "rabbit_quorum_queue")
		if _, ha := cfg.Get("oslo_messaging_rabbit", "rabbit_ha_queues"); q.Value != "true" || ha {
			t.Errorf("%s: quorum cluster: rabbit_quorum_queue %q, rabbit_ha_queues written %v", name, q.Value, ha)
		}
	}
	if _, ok := byName["ceilometer"].Sections["database"]; ok {
		t.Error("ceilometer has no SQL database")
	}
}

func TestTransportURLVHost(t *testing.T) {
	c := loadSpec(t, "testdata/mirrored.yaml")
	if u := TransportURL(c, secrets.Fixed{secrets.RabbitServicePassword: "pw"}); !strings.HasSuffix(u, "@10.78.0.14:5672/openstack") {
		t.Errorf("vhost openstack: %s", u)
	}
	c.Spec.RabbitMQ.VHost = "/os"
	if u := TransportURL(c, secrets.Fixed{}); !strings.HasSuffix(u, ":5672/%2Fos") {
		t.Errorf("vhost /os: %s", u)
	}
}

func TestHeartbeatFollowsSpec(t *testing.T) {
	c := loadSpec(t, "testdata/mirrored.yaml")
	c.Spec.RabbitMQ.ClientHeartbeat.Duration = 7e9
	if got := HeartbeatThreshold(c); got != 7 {
		t.Errorf("clientHeartbeat 7s: threshold %d, want 7", got)
	}
}
