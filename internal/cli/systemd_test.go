package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/spec"
)

// systemdImageCache keeps the booted hosts' base images between runs (a
// run with no cache builds them; that must pass too).
const systemdImageCache = "/var/cache/hastack/lab-images"

// TestIntegrationSystemdHostsDebian12 deploys onto booted Debian 12 hosts:
// systemd as PID 1, the engines installed as apt installs them (running,
// enabled), reached over SSH as real hosts. up reaches healthy with nothing
// done by hand; check finds no failure; a controller's mariadb killed with
// SIGKILL and every controller rebooted at once are both repaired by up;
// a second up changes nothing; lab down leaves nothing behind.
func TestIntegrationSystemdHostsDebian12(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: boots Debian 12 hosts with systemd-nspawn and deploys on them; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root")
	}
	for _, tool := range []string{"systemd-nspawn", "debootstrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing on this machine (bash scripts/install-deps installs systemd-container and debootstrap): no booted hosts here", tool)
		}
	}
	dir := t.TempDir()
	t.Setenv(lab.EnvStateDir, filepath.Join(dir, "state"))
	useLabPrefix(t, "st")
	t.Setenv(lab.EnvImageDir, systemdImageCache)
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "sdtest", Controllers: 3, Computes: 1, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	y := strings.NewReplacer("10.78.0.0/22", "10.164.4.0/22", "10.78.0.", "10.164.4.", "10.78.1.", "10.164.5.", "10.77.", "10.164.").Replace(string(data))
	if strings.Contains(y, "10.77.") || strings.Contains(y, "10.78.") {
		t.Fatal("the example spec has addresses this test does not move")
	}
	specPath := filepath.Join(dir, "hastack.yaml")
	if err := os.WriteFile(specPath, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	var lastOut string
	hs := func(args ...string) (string, int) {
		t.Helper()
		start := time.Now()
		o, e, code := runIn(t, dir, "", args...)
		lastOut = o + e
		t.Logf("hastack %s: exit %d in %s\n%s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), lastLines(lastOut, 8))
		return o, code
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
				o, e, _ := runIn(t, dir, "", "lab", "exec", n, "--", "sh", "-c", "systemctl --failed --no-legend; journalctl -n 15 --no-pager -u mariadb -u rabbitmq-server")
				t.Logf("%s at the failure:\n%s%s", n, o, e)
			}
		}
		runIn(t, dir, "", "lab", "down")
	})
	healthy := func(when string) {
		t.Helper()
		o, code := hs("status", "-o", "json")
		var st struct {
			Healthy bool `json:"healthy"`
		}
		if code != 0 || json.Unmarshal([]byte(o), &st) != nil || !st.Healthy {
			t.Fatalf("%s: status is not healthy (exit %d)\n%s", when, code, lastLines(lastOut, 40))
		}
	}

	// Bad input first: changes nothing.
	if _, code := hs("lab", "up", "--os", "debian-11"); code == 0 || !strings.Contains(lastOut, `unknown release`) {
		t.Fatalf("lab up --os debian-11: exit %d, want a clear refusal\n%s", code, lastOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "lab.json")); err == nil {
		t.Fatal("a refused lab up left a lab behind")
	}

	if _, code := hs("lab", "up", "--os", "debian-12"); code != 0 {
		t.Fatalf("lab up --os debian-12 failed:\n%s", lastOut)
	}
	c, err := loadSpec(specPath, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.SSH == nil || c.Spec.SSH.KnownHosts != "hastack.known_hosts" {
		t.Fatalf("lab up --os wrote spec.ssh %+v", c.Spec.SSH)
	}
	// Hosts as apt leaves them: systemd runs, the engines run and are
	// enabled, MariaDB stand-alone.
	if o, code := hs("lab", "exec", "ctl1", "--", "sh", "-c", "cat /proc/1/comm; systemctl is-active mariadb rabbitmq-server; systemctl is-enabled mariadb"); code != 0 ||
		!strings.HasPrefix(o, "systemd\nactive\nactive\nenabled") {
		t.Fatalf("ctl1 is not a booted host with the packaged engines running:\n%s", lastOut)
	}

	if o, code := hs("up"); code != 0 || !strings.Contains(o, "up: done") {
		t.Fatalf("first up on booted hosts: exit %d\n%s", code, lastLines(lastOut, 40))
	}
	healthy("after the first up")
	if _, code := hs("check"); code != 0 {
		t.Errorf("check on booted hosts: exit %d\n%s", code, lastLines(lastOut, 60))
	}

	// SIGKILL a controller's MariaDB: systemd restarts it; up repairs
	// whatever is left and is healthy.
	if _, code := hs("lab", "fault", "kill", "ctl2", "mariadbd"); code != 0 {
		t.Fatalf("lab fault kill: %s", lastOut)
	}
	if _, code := hs("up"); code != 0 {
		t.Fatalf("up after mariadbd was killed: exit %d\n%s", code, lastLines(lastOut, 40))
	}
	healthy("after mariadbd was killed and up ran")

	// Every controller rebooted at once: MariaDB does not start by itself
	// (hastack disabled it), up recovers the cluster.
	if _, code := hs("lab", "reboot", "ctl1", "ctl2", "ctl3"); code != 0 {
		t.Fatalf("lab reboot: %s", lastOut)
	}
	if _, code := hs("up"); code != 0 {
		t.Fatalf("up after every controller rebooted: exit %d\n%s", code, lastLines(lastOut, 40))
	}
	healthy("after every controller rebooted and up ran")

	if o, code := hs("up"); code != 0 || !strings.Contains(o, "nothing changed") {
		t.Errorf("second up: exit %d, want it to change nothing\n%s", code, lastLines(lastOut, 30))
	}

	// lab down leaves no machine, bridge, network namespace or cgroup.
	if _, code := hs("lab", "down"); code != 0 {
		t.Fatalf("lab down: %s", lastOut)
	}
	if out, _ := exec.Command("ip", "-br", "link").Output(); strings.Contains(string(out), "stbr") {
		t.Errorf("lab down left bridges:\n%s", out)
	}
	if m, _ := filepath.Glob("/run/netns/st-*"); len(m) > 0 {
		t.Errorf("lab down left network namespaces %v", m)
	}
	for _, r := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if m, _ := filepath.Glob(filepath.Join(r, "hastack-lab-st-*")); len(m) > 0 {
			t.Errorf("lab down left cgroups %v", m)
		}
	}
	if out, _ := exec.Command("pgrep", "-f", "machine=st-").Output(); len(out) > 0 {
		t.Errorf("lab down left systemd-nspawn running: pids %s", out)
	}
}
