package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/sshnode"
	"github.com/hastack/hastack/internal/status"
)

// TestIntegrationSSH is the deploy over SSH end to end: 'lab up --ssh'
// makes every lab node an SSH host and writes the spec that reaches them;
// 'up' over SSH brings the layer up healthy; 'status' over SSH says what
// the lab transport says; a second 'up' changes nothing. Then the bad
// inputs, each on one node: unknown host key, changed host key, wrong
// user, sudo asking for a password, an unreachable host. Each is a clear
// error naming that host, the other hosts answer as before, and 'up'
// stops at its connect phase with nothing changed.
func TestIntegrationSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: deploys every engine on a lab reached over SSH; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root")
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Fatal("sshd is missing: bash scripts/install-deps installs openssh-server")
	}
	dir := t.TempDir()
	t.Setenv(lab.EnvStateDir, filepath.Join(dir, "state"))
	useLabPrefix(t, "hx")
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "sshtest", Controllers: 3, Computes: 1, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	y := strings.ReplaceAll(strings.ReplaceAll(string(data), "10.77.", "10.246."), "10.78.", "10.247.")
	specPath := filepath.Join(dir, "hastack.yaml")
	if err := os.WriteFile(specPath, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	// hs logs each command with the end of its output; a failed
	// assertion repeats the output it judged (lastOut), so the reason is
	// next to the failure even where a CI summary keeps only the start.
	var lastOut string
	hs := func(args ...string) (string, string, int) {
		t.Helper()
		start := time.Now()
		o, e, code := runIn(t, dir, "", args...)
		lastOut = o + e
		t.Logf("hastack %s: exit %d in %s\n%s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond), lastLines(lastOut, 6))
		return o, e, code
	}
	labDownAfter(t, dir)

	if _, _, code := hs("lab", "up", "--ssh"); code != 0 {
		t.Fatalf("lab up --ssh failed:\n%s", lastOut)
	}
	c, err := loadSpec(specPath, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.SSH == nil || c.Spec.SSH.User != "root" || c.Spec.SSH.KnownHosts != "hastack.known_hosts" {
		t.Fatalf("lab up --ssh wrote spec.ssh %+v", c.Spec.SSH)
	}
	known := filepath.Join(dir, "hastack.known_hosts")
	goodKnown, err := os.ReadFile(known)
	if err != nil || strings.Count(string(goodKnown), " ssh-ed25519 ") != 4 {
		t.Fatalf("known_hosts: %v\n%s", err, goodKnown)
	}
	// A second run changes nothing: same host keys, same spec.
	goodSpec, _ := os.ReadFile(specPath)
	if o, _, code := hs("lab", "up", "--ssh"); code != 0 || !strings.Contains(o, "already reaches the nodes over SSH") {
		t.Errorf("second lab up --ssh: exit %d\n%s", code, lastLines(lastOut, 30))
	}
	if again, _ := os.ReadFile(known); string(again) != string(goodKnown) {
		t.Error("a second lab up --ssh changed the host keys")
	}

	o, _, code := hs("up")
	if code != 0 || !strings.Contains(o, "up: done") {
		t.Fatalf("up over SSH: exit %d\n%s", code, lastLines(lastOut, 30))
	}

	// The same cluster through both transports: the same verdict, the
	// same per-node health, the same writer.
	l, err := lab.Open(lab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	labT, _, err := labTarget(c, specPath, l)
	if err != nil {
		t.Fatal(err)
	}
	sshT, _, err := target(c, specPath, lab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range sshT.Nodes {
		if _, ok := n.(*sshnode.Node); !ok {
			t.Fatalf("node %s is reached by %T, not over SSH", name, n)
		}
	}
	if !sshT.SharedClock {
		t.Error("lab nodes over SSH share this machine's clock; the target says they do not")
	}
	ctx := context.Background()
	viaLab, viaSSH := status.Collect(ctx, statusTarget(labT)), status.Collect(ctx, statusTarget(sshT))
	if !viaSSH.Healthy || viaSSH.Verdict != viaLab.Verdict || viaSSH.Writer != viaLab.Writer || !slices.Equal(healthSummary(t, viaSSH), healthSummary(t, viaLab)) {
		t.Errorf("status over SSH (%s, writer %s, %v) differs from the lab transport's (%s, writer %s, %v)",
			viaSSH.Verdict, viaSSH.Writer, healthSummary(t, viaSSH), viaLab.Verdict, viaLab.Writer, healthSummary(t, viaLab))
	}
	if o, _, code := hs("status", "-o", "json"); code != 0 || !strings.Contains(o, `"healthy": true`) {
		t.Errorf("status over SSH: exit %d\n%s", code, lastLines(lastOut, 30))
	}
	if o, _, code := hs("up"); code != 0 || !strings.Contains(o, "nothing changed") {
		t.Errorf("second up over SSH: exit %d, want it to change nothing\n%s", code, lastLines(lastOut, 30))
	}

	// Bad inputs. Each breaks one host; status names that host, and only
	// it; up stops at connect, naming it, with nothing changed.
	setKnown := func(edit func(line string) string) {
		t.Helper()
		var out []string
		for _, line := range strings.Split(string(goodKnown), "\n") {
			out = append(out, edit(line))
		}
		if err := os.WriteFile(known, []byte(strings.Join(out, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setNodeSSH := func(nodeName, block string) {
		t.Helper()
		s := strings.Replace(string(goodSpec), "  - name: "+nodeName+"\n", "  - name: "+nodeName+"\n    ssh: "+block+"\n", 1)
		if err := os.WriteFile(specPath, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	restore := func() {
		t.Helper()
		os.WriteFile(known, goodKnown, 0o644)
		os.WriteFile(specPath, goodSpec, 0o644)
	}
	onlyHostFails := func(what, host, want string) {
		t.Helper()
		o, e, code := hs("status", "-o", "json")
		var rep struct {
			Verdict  string   `json:"verdict"`
			Problems []string `json:"problems"`
		}
		if err := json.Unmarshal([]byte(o), &rep); err != nil {
			t.Fatalf("%s: status -o json: %v\n%s", what, err, e)
		}
		if code != 1 || rep.Verdict != status.Degraded {
			t.Errorf("%s: status exit %d (%s), want 1 (degraded: only %s's time service is unknown)\n%s", what, code, rep.Verdict, host, lastLines(lastOut, 30))
		}
		if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], host+":") || !strings.Contains(rep.Problems[0], want) {
			t.Errorf("%s: want one problem, on %s, saying %q; got %q", what, host, want, rep.Problems)
		}
	}

	// 1. Unknown host key.
	setKnown(func(line string) string {
		if strings.HasPrefix(line, "10.246.0.12 ") {
			return ""
		}
		return line
	})
	onlyHostFails("unknown host key", "ctl2", "the host key is not known")
	before := snapshotServices(t, l)
	_, e, code := hs("up")
	if code != 1 || !strings.Contains(e, "phase connect") || !strings.Contains(e, "ctl2: unreachable: ctl2: root@10.246.0.12:22: the host key is not known") || strings.Contains(e, "ctl1:") {
		t.Errorf("up with ctl2's host key unknown: exit %d\n%s", code, lastLines(lastOut, 30))
	}
	if after := snapshotServices(t, l); !slices.Equal(before, after) {
		t.Errorf("up refused at connect, yet services changed:\nbefore %v\nafter  %v", before, after)
	}
	if b, _ := os.ReadFile(known); strings.Contains(string(b), "10.246.0.12 ") {
		t.Error("an unknown host key was recorded without acceptNewHostKeys")
	}

	// 2. Changed host key: refused, even where new keys are accepted.
	setKnown(func(line string) string {
		if strings.HasPrefix(line, "10.246.0.13 ") {
			return "10.246.0.13 " + otherKey(t)
		}
		return line
	})
	setNodeSSH("ctl3", "{acceptNewHostKeys: true}")
	onlyHostFails("changed host key", "ctl3", "HOST KEY CHANGED")
	restore()

	// 3. Wrong user (no such user on the host): refused, and said why.
	setNodeSSH("cmp1", "{user: hxnobody}")
	onlyHostFails("wrong user", "cmp1", "the host refused the key")
	restore()

	// 4. sudo asks for a password: a user that exists on cmp1 only, with
	// the lab's key, and no sudo rights.
	addNodeUser(t, l, "cmp1", "hxop")
	setNodeSSH("cmp1", "{user: hxop}")
	onlyHostFails("sudo password", "cmp1", "sudo needs a password on cmp1: give hxop NOPASSWD sudo")
	restore()

	// 5. Unreachable: an address in the lab's range where no node is.
	setNodeSSH("cmp1", "{host: 10.246.3.250}")
	onlyHostFails("unreachable host", "cmp1", "no route to host")
	restore()

	if _, _, code := hs("status"); code != 0 {
		t.Errorf("status after every bad input was undone: exit %d\n%s", code, lastLines(lastOut, 30))
	}
}

// healthSummary is "service node healthy" for every entry of a report, in
// order.
func healthSummary(t *testing.T, r status.Report) []string {
	t.Helper()
	data, err := json.Marshal(r.Services)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string][]struct {
		Node    string `json:"node"`
		Healthy bool   `json:"healthy"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, svc := range []string{"galera", "rabbitmq", "memcached", "ntp", "endpoint"} {
		for _, e := range m[svc] {
			out = append(out, fmt.Sprintf("%s %s %v", svc, e.Node, e.Healthy))
		}
	}
	return out
}

// snapshotServices is every supervised service of every node, with its
// PID and start time: what a refused 'up' must leave as it was.
func snapshotServices(t *testing.T, l *lab.Lab) []string {
	t.Helper()
	nodes, err := l.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range nodes {
		sts, err := n.Supervisor().List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range sts {
			out = append(out, fmt.Sprintf("%s/%s pid %d since %s", n.Name(), st.Name, st.PID, st.Started.Format(time.RFC3339Nano)))
		}
	}
	return out
}

// otherKey is an ed25519 public key no host has, as a known_hosts entry's
// key part.
func otherKey(t *testing.T) string {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// addNodeUser makes a login user that exists on one lab node only: the
// node's own copies of passwd, group and shadow, bind-mounted in its mount
// namespace (the host's files stay as they are), and the lab's client key
// authorized for it. It has no sudo rights.
func addNodeUser(t *testing.T, l *lab.Lab, nodeName, user string) {
	t.Helper()
	n, err := l.Node(nodeName)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, f := range []struct{ name, line string }{
		{"passwd", user + ":x:4242:4242:hastack test:/nonexistent:/bin/sh"},
		{"group", user + ":x:4242:"},
		{"shadow", user + ":*:19000:0:99999:7:::"},
	} {
		host, err := os.ReadFile("/etc/" + f.name)
		if err != nil {
			t.Fatal(err)
		}
		own := "/etc/hastack/test-" + f.name
		if err := n.WriteFile(ctx, own, append(host, []byte(f.line+"\n")...), 0o644, ""); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("nsenter", "-t", fmt.Sprint(n.PID()), "-m", "--", "mount", "--bind", own, "/etc/"+f.name).CombinedOutput(); err != nil {
			t.Fatalf("binding %s over /etc/%s in %s: %v: %s", own, f.name, nodeName, err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(os.Getenv(lab.EnvStateDir), "ssh", "id_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.WriteFile(ctx, "/etc/hastack/ssh/authorized_keys/"+user, pub, 0o644, ""); err != nil {
		t.Fatal(err)
	}
}

// lastLines is the end of a command's output: at most n lines, with a
// note of how many came before.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return fmt.Sprintf("[%d lines before]\n%s", len(lines)-n, strings.Join(lines[len(lines)-n:], "\n"))
}
