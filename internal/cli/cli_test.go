package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/lab"
)

func run(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	err := Run(context.Background(), Streams{In: strings.NewReader(""), Out: &out, Err: &errb}, args)
	if err != nil {
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), ExitCode(err)
}

func TestInitValidateRender(t *testing.T) {
	dir := t.TempDir()
	if _, e, code := run(t, dir, "init"); code != 0 {
		t.Fatalf("init: %d %s", code, e)
	}
	if _, e, code := run(t, dir, "init"); code != 1 || !strings.Contains(e, "already exists") {
		t.Fatalf("second init must refuse to overwrite: %d %s", code, e)
	}
	if o, e, code := run(t, dir, "validate"); code != 0 || !strings.Contains(o, "valid") {
		t.Fatalf("validate: %d %s %s", code, o, e)
	}
	if _, e, code := run(t, dir, "render", "--out", "r"); code != 0 {
		t.Fatalf("render: %d %s", code, e)
	}
	fi, err := os.Stat(filepath.Join(dir, "r/ctl1/var/lib/rabbitmq/.erlang.cookie"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cookie: %v %v", err, fi)
	}
	fi, err = os.Stat(filepath.Join(dir, "hastack.secrets.yaml"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file: %v %v", err, fi)
	}
	cookie1, _ := os.ReadFile(filepath.Join(dir, "r/ctl1/var/lib/rabbitmq/.erlang.cookie"))
	cookie2, _ := os.ReadFile(filepath.Join(dir, "r/ctl2/var/lib/rabbitmq/.erlang.cookie"))
	if len(cookie1) == 0 || !bytes.Equal(cookie1, cookie2) {
		t.Fatal("every RabbitMQ node needs the same cookie")
	}
	// A second render keeps the secrets.
	if _, e, code := run(t, dir, "render", "--out", "r2"); code != 0 {
		t.Fatalf("render: %d %s", code, e)
	}
	again, _ := os.ReadFile(filepath.Join(dir, "r2/ctl1/var/lib/rabbitmq/.erlang.cookie"))
	if !bytes.Equal(cookie1, again) {
		t.Fatal("a second render generated a new cookie")
	}
}

func TestInvalidSpecWritesNothing(t *testing.T) {
	dir := t.TempDir()
	bad, _ := os.ReadFile("../spec/testdata/invalid-nodes.yaml")
	os.WriteFile(filepath.Join(dir, "hastack.yaml"), bad, 0o644)
	_, e, code := run(t, dir, "render", "--out", "r")
	if code != 1 {
		t.Fatalf("exit %d, want 1: %s", code, e)
	}
	for _, want := range []string{"spec.nodes[1].name", "spec.nodes[3].role", "spec.nodes[4].address"} {
		if !strings.Contains(e, want) {
			t.Errorf("error output lacks %s:\n%s", want, e)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("an invalid spec wrote files: %v", entries)
	}
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	if _, e, code := run(t, dir, "init"); code != 0 {
		t.Fatalf("init: %s", e)
	}
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"validate", "-f", "missing.yaml"}, 1},
		{[]string{"validate", "--no-such-flag"}, 2},
		{[]string{"validate", "extra-arg"}, 2},
		{[]string{"render"}, 2},
		{[]string{"no-such-command"}, 2},
		{[]string{"init", "--controllers", "0", "-o", "-"}, 2},
		{[]string{"--help"}, 0},
		{[]string{"init", "--controllers", "x"}, 2},
		{[]string{"recover", "rabbitmq", "extra-arg"}, 2},
		{[]string{"recover", "rabbitmq", "--no-such-flag"}, 2},
		{[]string{"recover", "rabbitmq", "-f", "missing.yaml"}, 1},
		// Runtime errors whose words cobra's usage errors also use: an
		// EINVAL from the kernel ("invalid argument"), a file named
		// "accepts ...". They are failures (1), not usage (2).
		{[]string{"render", "--out", "a\x00b"}, 1},
		{[]string{"render", "--out", "accepts 1 arg(s)/\x00"}, 1},
	}
	for _, c := range cases {
		_, e, code := run(t, dir, c.args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d (%s)", c.args, code, c.code, e)
		}
	}
}

func TestEveryCommandHasHelpWithExample(t *testing.T) {
	root := newRoot(Streams{})
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if c.Short == "" || (c.Example == "" && !c.HasSubCommands()) {
			t.Errorf("%s: --help needs a description and an example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			if !sub.Hidden && (sub.Short == "" || sub.Example == "") {
				t.Errorf("%s: --help needs a description and an example", sub.CommandPath())
			}
		}
	}
}

// up, status and check find the lab that --state-dir and --prefix name,
// with no environment variables set.
func TestLabFlagsPlaceTheLab(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(lab.EnvStateDir, "")
	t.Setenv(lab.EnvPrefix, "")
	if _, e, code := run(t, dir, "init", "--lab"); code != 0 {
		t.Fatalf("init: %s", e)
	}
	state := filepath.Join(dir, "labstate")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "lab.json"), []byte(`{"cluster":"another","prefix":"zq"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"up", "status", "check"} {
		_, e, code := run(t, dir, cmd, "--state-dir", state, "--prefix", "zq")
		if code != 1 || !strings.Contains(e, `the lab on this machine is for cluster "another"`) {
			t.Errorf("%s --state-dir: exit %d, want the lab at %s found: %s", cmd, code, state, e)
		}
	}
}
