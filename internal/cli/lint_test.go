package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLintCommand(t *testing.T) {
	dir := t.TempDir()
	if _, e, code := run(t, dir, "init", "--lab"); code != 0 {
		t.Fatalf("init: %s", e)
	}
	if _, e, code := run(t, dir, "render", "--out", "out"); code != 0 {
		t.Fatalf("render: %s", e)
	}
	var rendered []string
	for _, svc := range []string{"nova", "cinder", "neutron", "ceilometer", "keystone"} {
		p := filepath.Join("out", "openstack", svc+".conf")
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("render: %s: %v %v (want mode 0600: it holds passwords)", p, err, fi)
		}
		rendered = append(rendered, p)
	}

	// What hastack renders is clean, against the cluster it was rendered for.
	o, e, code := run(t, dir, append([]string{"lint", "-f", "hastack.yaml"}, rendered...)...)
	if code != 0 || o != "" || !strings.Contains(e, "5 file(s), OpenStack zed, against cluster lab: 0 error(s), 0 warning(s)") {
		t.Errorf("lint of rendered files: exit %d\n%s%s", code, o, e)
	}

	single := "[DEFAULT]\ntransport_url = rabbit://u:p@10.77.0.11:5672/\n[oslo_messaging_rabbit]\nheartbeat_timeout_threshold = 10\nrabbit_quorum_queue = true\n"
	warnOnly := "[DEFAULT]\ntransport_url = rabbit://u:p@h1:5672,u:p@h2:5672/\n"
	if err := os.WriteFile(filepath.Join(dir, "single.conf"), []byte(single), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "warn.conf"), []byte(warnOnly), 0o644); err != nil {
		t.Fatal(err)
	}
	o, _, code = run(t, dir, "lint", "single.conf")
	if code != 1 || !strings.Contains(o, "single.conf:2: error: [DEFAULT] transport_url lists a single RabbitMQ node (10.77.0.11:5672)") || !strings.Contains(o, "(fix: list every node") {
		t.Errorf("single host: exit %d\n%s", code, o)
	}
	// Against the cluster, the same file also misses two nodes.
	o, _, code = run(t, dir, "lint", "-f", "hastack.yaml", "single.conf")
	if code != 1 || !strings.Contains(o, "lacks ctl2") {
		t.Errorf("single host against the cluster: exit %d\n%s", code, o)
	}
	o, _, code = run(t, dir, "lint", "warn.conf")
	if code != 0 || !strings.Contains(o, "warn.conf:2: warning: heartbeat_timeout_threshold is not set") {
		t.Errorf("warnings only: exit %d, want 0\n%s", code, o)
	}

	// Bad input: a clear finding, never a crash.
	o, _, code = run(t, dir, "lint", "missing.conf", "hastack.yaml")
	if code != 1 || !strings.Contains(o, "missing.conf:0: error: cannot read it") || !strings.Contains(o, "hastack.yaml:") || !strings.Contains(o, "not an OpenStack service config") {
		t.Errorf("missing file and a spec: exit %d\n%s", code, o)
	}
	if _, _, code := run(t, dir, "lint"); code != 2 {
		t.Errorf("lint without files: exit %d, want 2", code)
	}
	if _, e, code := run(t, dir, "lint", "--release", "folsom", "warn.conf"); code != 2 || !strings.Contains(e, "zed, 2026.1") {
		t.Errorf("unknown release: exit %d %s", code, e)
	}
	o, _, code = run(t, dir, "lint", "--release", "2026.1", "warn.conf")
	if code != 0 || !strings.Contains(o, "warning") {
		t.Errorf("--release 2026.1: exit %d\n%s", code, o)
	}
}
