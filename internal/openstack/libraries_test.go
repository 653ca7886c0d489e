package openstack

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hastack/hastack/internal/secrets"
)

// debianPython is Debian's interpreter, which sees the python3-oslo.*
// packages (a python of another origin on PATH does not).
const debianPython = "/usr/bin/python3"

// OsloCheck runs testdata/oslo_check.py with Debian's python and decodes its
// JSON answer. Tests in other packages (the lab test) call it too.
func OsloCheck(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(debianPython, append([]string{script}, args...)...)
	var stderr []byte
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", script, args, err, stderr)
	}
	return out
}

func needLibraries(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration: needs Debian's python3-oslo.messaging, python3-oslo.cache, python3-oslo.db and python3-keystonemiddleware; runs without -short")
	}
	if out, err := exec.Command(debianPython, "-c", "import oslo_messaging, oslo_cache, oslo_db, keystonemiddleware, pymemcache").CombinedOutput(); err != nil {
		t.Fatalf("the OpenStack client libraries are not installed (run scripts/install-deps): %v\n%s", err, out)
	}
}

var defaultPoolOptions = map[string]bool{"rpc_conn_pool_size": true, "conn_pool_min_size": true, "conn_pool_ttl": true}

// TestIntegrationZedCatalogueMatchesLibraries compares hastack's zed option
// catalogue with the option definitions of the libraries Debian 12 ships.
func TestIntegrationZedCatalogueMatchesLibraries(t *testing.T) {
	needLibraries(t)
	var lib map[string]map[string]string
	if err := json.Unmarshal(OsloCheck(t, "testdata/oslo_check.py", "catalogue"), &lib); err != nil {
		t.Fatal(err)
	}
	cat, _ := catalogFor(Zed)
	for name, g := range cat.groups {
		libNames := lib[name]
		if len(libNames) == 0 {
			t.Errorf("[%s]: the libraries register nothing there", name)
			continue
		}
		for opt, o := range g.opts {
			st, ok := libNames[opt]
			if name == "DEFAULT" && defaultPoolOptions[opt] {
				// oslo.messaging's list_opts shows the connection pool
				// options under DEFAULT for the sample generator; the
				// rabbit driver reads them from its own group and takes
				// [DEFAULT] only as a deprecated alias.
				continue
			}
			switch {
			case o.status == removed && ok:
				t.Errorf("[%s] %s: hastack says removed, the library reads it (%s)", name, opt, st)
			case o.status == known && !ok:
				t.Errorf("[%s] %s: hastack says known, the library does not register it", name, opt)
			case o.status == known && st != "current":
				t.Errorf("[%s] %s: hastack says current, the library says %s", name, opt, st)
			case o.status == deprecated && ok && st == "current":
				t.Errorf("[%s] %s: hastack says deprecated, the library says current", name, opt)
			}
		}
		if !g.complete {
			continue
		}
		var missing []string
		for opt := range libNames {
			if o, ok := g.opts[opt]; !ok || o.status == removed {
				missing = append(missing, opt)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("[%s]: the library reads options hastack's zed catalogue lacks: %v", name, missing)
		}
	}
}

// TestIntegrationRenderedConfigsLoad loads every rendered file, for both
// queue types, with oslo.config and the libraries' own options: no option
// in the groups hastack writes is unknown, every value converts, and the
// messaging and cache layers read what was meant.
func TestIntegrationRenderedConfigsLoad(t *testing.T) {
	needLibraries(t)
	for _, name := range []string{"quorum", "mirrored"} {
		c := loadSpec(t, filepath.Join("testdata", name+".yaml"))
		c.Spec.OpenStack.Release = Zed // the release of the installed libraries
		files, err := Render(c, secrets.Fixed{secrets.RabbitServicePassword: "p@ss/w:rd", DatabasePasswordSecret("nova"): "x%y"})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := WriteFiles(dir, files); err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, f := range files {
			paths = append(paths, filepath.Join(dir, f.Path))
		}
		var results []struct {
			File       string         `json:"file"`
			Unknown    []string       `json:"unknown"`
			Errors     []string       `json:"errors"`
			Hosts      []string       `json:"rabbit_hosts"`
			Rabbit     map[string]any `json:"rabbit"`
			Cache      map[string]any `json:"cache"`
			CacheClass string         `json:"cache_backend_class"`
		}
		if err := json.Unmarshal(OsloCheck(t, "testdata/oslo_check.py", append([]string{"check"}, paths...)...), &results); err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			base := name + "/" + filepath.Base(r.File)
			if len(r.Unknown) > 0 || len(r.Errors) > 0 {
				t.Errorf("%s: unknown %v, errors %v", base, r.Unknown, r.Errors)
			}
			if len(r.Hosts) != len(c.Controllers()) {
				t.Errorf("%s: oslo.messaging reads %d RabbitMQ hosts %v, want %d", base, len(r.Hosts), r.Hosts, len(c.Controllers()))
			}
			if r.Rabbit["heartbeat_timeout_threshold"] != float64(HeartbeatThreshold(c)) || r.Rabbit["rabbit_interval_max"] != float64(intervalMax) {
				t.Errorf("%s: oslo.messaging reads %v", base, r.Rabbit)
			}
			wantQuorum := c.Spec.RabbitMQ.QueueType == "quorum"
			if r.Rabbit["rabbit_quorum_queue"] != wantQuorum || r.Rabbit["rabbit_ha_queues"] != false || r.Rabbit["amqp_durable_queues"] != !wantQuorum {
				t.Errorf("%s: queue settings %v for a %s cluster", base, r.Rabbit, c.Spec.RabbitMQ.QueueType)
			}
			m := c.Spec.Memcached
			if r.CacheClass != "PooledMemcachedBackend" || r.Cache["socket_timeout"] != m.ClientTimeout.Seconds() || r.Cache["dead_retry"] != m.ClientDeadRetry.Seconds() || r.Cache["pool_connection_get_timeout"] != float64(1) {
				t.Errorf("%s: oslo.cache builds %s with %v", base, r.CacheClass, r.Cache)
			}
			if urls, _ := r.Cache["url"].([]any); len(urls) != len(c.Controllers()) {
				t.Errorf("%s: oslo.cache reads servers %v", base, r.Cache["url"])
			}
		}
	}
	if _, err := os.Stat(debianPython); err != nil {
		t.Fatal(err)
	}
}
