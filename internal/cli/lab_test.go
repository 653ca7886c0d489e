package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/spec"
)

func TestMain(m *testing.M) {
	// 'lab up' re-executes this test binary as the nodes' init, and 'up'
	// installs it on the nodes as hastack's agent.
	lab.MaybeRunInit()
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		err := Run(context.Background(), Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.Args[1:])
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
		}
		os.Exit(ExitCode(err))
	}
	os.Exit(m.Run())
}

func runIn(t *testing.T, dir, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	err := Run(context.Background(), Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb}, args)
	if err != nil {
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), ExitCode(err)
}

func TestIntegrationLabCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: makes a lab (network namespaces, bridges, mounts); runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root")
	}
	dir := t.TempDir()
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "clitest", Controllers: 2, Computes: 1, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	y := strings.ReplaceAll(strings.ReplaceAll(string(data), "10.77.", "10.213."), "10.78.", "10.214.")
	if err := os.WriteFile(filepath.Join(dir, "hastack.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	clearStaleLab(t, "hc")
	flags := []string{"--state-dir", filepath.Join(dir, "state"), "--prefix", "hc"}
	lab := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		// The lab's flags go before any '--' that ends exec's own.
		all := append([]string{"lab", args[0]}, flags...)
		return runIn(t, dir, stdin, append(all, args[1:]...)...)
	}
	t.Cleanup(func() { lab("", "down") })

	if o, e, code := lab("", "up"); code != 0 {
		t.Fatalf("lab up: %d\n%s\n%s", code, o, e)
	}
	o, e, code := lab("", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("lab list: %d %s", code, e)
	}
	var entries []map[string]any
	if err := json.Unmarshal([]byte(o), &entries); err != nil {
		t.Fatalf("lab list -o json: %v\n%s", err, o)
	}
	if len(entries) != 4 || entries[0]["name"] != "ctl1" || entries[0]["role"] != "controller" || entries[0]["address"] != "10.213.0.11" {
		t.Errorf("lab list -o json: %s", o)
	}
	if o, _, _ := lab("", "list"); !strings.Contains(o, "ctl2") || !strings.Contains(o, "provider=10.214.0.12") {
		t.Errorf("lab list:\n%s", o)
	}

	if o, e, code := lab("", "exec", "ctl2", "--", "hostname"); code != 0 || strings.TrimSpace(o) != "ctl2" {
		t.Errorf("lab exec hostname: %d %q %s", code, o, e)
	}
	if _, _, code := lab("", "exec", "ctl1", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("lab exec exit code: %d, want 7", code)
	}
	if o, _, code := lab("piped through\n", "exec", "cmp1", "--", "cat"); code != 0 || o != "piped through\n" {
		t.Errorf("lab exec stdin: %d %q", code, o)
	}
	if o, _, code := lab("", "exec", "ctl1", "-u", "nobody", "--", "id", "-un"); code != 0 || strings.TrimSpace(o) != "nobody" {
		t.Errorf("lab exec -u nobody: %d %q", code, o)
	}
	if _, e, code := lab("", "exec", "ctl9", "--", "true"); code != 1 || !strings.Contains(e, `no lab node "ctl9"`) {
		t.Errorf("lab exec on a missing node: %d %s", code, e)
	}

	if o, e, code := lab("", "fault", "partition", "ctl2"); code != 0 || !strings.Contains(o, "cut off the management network") {
		t.Errorf("fault partition: %d %s %s", code, o, e)
	}
	if o, e, code := lab("", "fault", "heal", "ctl2"); code != 0 || !strings.Contains(o, "restored") {
		t.Errorf("fault heal: %d %s %s", code, o, e)
	}
	if o, _, code := lab("", "snapshots"); code != 0 || !strings.Contains(o, "no snapshots") {
		t.Errorf("snapshots: %d %s", code, o)
	}
	if _, e, code := lab("", "rollback", "missing"); code != 1 || !strings.Contains(e, `no snapshot "missing"`) {
		t.Errorf("rollback missing: %d %s", code, e)
	}

	if o, e, code := lab("", "down"); code != 0 || !strings.Contains(o, "down") {
		t.Fatalf("lab down: %d %s %s", code, o, e)
	}
	if _, e, code := lab("", "list"); code != 1 || !strings.Contains(e, "no lab is up") {
		t.Errorf("list after down: %d %s", code, e)
	}
	if _, _, code := lab("", "down"); code != 0 {
		t.Errorf("second lab down: exit %d", code)
	}
}

// testLab prepares an end-to-end test's lab: a folder holding hastack.yaml
// (the example spec of the given shape, moved to the address ranges
// mgmt.x and provider.x so the test runs beside an operator's lab) and the
// environment that points every lab command at a state folder and prefix
// of the test's own. It returns the folder and the spec's text.
func testLab(t *testing.T, name, prefix string, controllers, computes int, mgmt, provider string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv(lab.EnvStateDir, filepath.Join(dir, "state"))
	useLabPrefix(t, prefix)
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: name, Controllers: controllers, Computes: computes, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	y := strings.ReplaceAll(strings.ReplaceAll(string(data), "10.77.", mgmt+"."), "10.78.", provider+".")
	if err := os.WriteFile(filepath.Join(dir, "hastack.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, y
}

// labUp brings up the lab of the test's spec in dir, removes it when the
// test ends (labDownAfter), and returns a runner of hastack commands in dir
// that logs a command's output when it fails.
func labUp(t *testing.T, dir string) func(args ...string) (string, int) {
	t.Helper()
	hs := func(args ...string) (string, int) {
		t.Helper()
		o, e, code := runIn(t, dir, "", args...)
		if code != 0 {
			t.Logf("hastack %s: exit %d\n%s%s", strings.Join(args, " "), code, o, e)
		}
		return o, code
	}
	labDownAfter(t, dir)
	if _, code := hs("lab", "up"); code != 0 {
		t.Fatal("lab up failed")
	}
	return hs
}

// labDownAfter removes the test's lab when the test ends. A failed test
// first logs what each node's time service says (sources and its log's
// end): its health moves on its own, so a failure must carry the evidence.
func labDownAfter(t *testing.T, dir string) {
	t.Cleanup(func() {
		if t.Failed() {
			o, _, _ := runIn(t, dir, "", "lab", "list", "-o", "json")
			var nodes []struct {
				Name string `json:"name"`
				Role string `json:"role"`
			}
			_ = json.Unmarshal([]byte(o), &nodes)
			for _, n := range nodes {
				out, errOut, _ := runIn(t, dir, "", "lab", "exec", n.Name, "--", "sh", "-c", "chronyc -n sources; tail -n 8 /var/log/hastack/chrony.log")
				t.Logf("%s (%s), time service at the failure:\n%s%s", n.Name, n.Role, out, errOut)
			}
		}
		runIn(t, dir, "", "lab", "down")
	})
}

// useLabPrefix makes prefix the lab prefix of the hastack commands the test
// runs, after removing what an interrupted earlier run of the test left
// under that prefix (each test has a prefix of its own).
func useLabPrefix(t *testing.T, prefix string) {
	t.Helper()
	t.Setenv(lab.EnvPrefix, prefix)
	clearStaleLab(t, prefix)
}

// clearStaleLab removes a lab with this prefix whose state is gone: its
// node processes, namespaces, links and firewall rules, found by their marks.
func clearStaleLab(t *testing.T, prefix string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	if err := lab.Down(context.Background(), lab.Options{StateDir: t.TempDir(), Prefix: prefix, Log: t.Logf}); err != nil {
		t.Fatalf("removing what an earlier run left under lab prefix %s: %v", prefix, err)
	}
}
