package sshnode

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/node"
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "''",
		"plain":            "plain",
		"/usr/sbin/x":      "/usr/sbin/x",
		"a b":              "'a b'",
		"it's":             `'it'\''s'`,
		"$HOME":            "'$HOME'",
		"`id`":             "'`id`'",
		"a;b|c&d":          "'a;b|c&d'",
		"--listen=1.2.3.4": "--listen=1.2.3.4",
		"*":                "'*'",
		"new\nline":        "'new\nline'",
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// The quoting must survive a real shell: every word comes back as it went
// in, whatever it holds.
func TestQuoteRoundTripsThroughSh(t *testing.T) {
	words := []string{"", "a b", "it's", `"dq"`, "$HOME", "`id`", "a;b", "*", "new\nline", `back\slash`, "ünïcode", "'", "''", "-n"}
	var q []string
	for _, w := range words {
		q = append(q, Quote(w))
	}
	out, err := exec.Command("sh", "-c", "set -- "+strings.Join(q, " ")+`; for a in "$@"; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(words) {
		t.Fatalf("got %d words back, want %d: %q", len(got), len(words), got)
	}
	for i := range words {
		if got[i] != words[i] {
			t.Errorf("word %d: got %q, want %q", i, got[i], words[i])
		}
	}
}

func TestCommandLine(t *testing.T) {
	env := "env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8"
	for _, c := range []struct {
		name string
		sudo bool
		cmd  node.Cmd
		want string
	}{
		{"root", false, node.Cmd{Argv: []string{"hostname"}}, "exec " + env + " hostname"},
		{"sudo", true, node.Cmd{Argv: []string{"hostname"}}, "exec sudo -n -- " + env + " hostname"},
		{"quoted", false, node.Cmd{Argv: []string{"mariadb", "-e", "SHOW STATUS LIKE 'wsrep%'"}}, "exec " + env + ` mariadb -e 'SHOW STATUS LIKE '\''wsrep%'\'''`},
		{"env and dir", false, node.Cmd{Argv: []string{"x"}, Env: []string{"A=1", "B=two words"}, Dir: "/var/lib/rabbitmq"}, "exec env -C /var/lib/rabbitmq PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 A=1 'B=two words' x"},
		{"other user with sudo", true, node.Cmd{Argv: []string{"id"}, User: "rabbitmq"}, "exec sudo -n -- runuser -u rabbitmq -- " + env + " id"},
		{"root user is no switch", false, node.Cmd{Argv: []string{"id"}, User: "root"}, "exec " + env + " id"},
	} {
		got, err := CommandLine(c.sudo, c.cmd)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s:\n got  %s\n want %s", c.name, got, c.want)
		}
	}
	for _, bad := range []node.Cmd{{}, {Argv: []string{"A=1"}}, {Argv: []string{"x"}, Env: []string{"NOEQUALS"}}, {Argv: []string{"x"}, Env: []string{"=v"}}} {
		if _, err := CommandLine(false, bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// The command line runs as written in a local shell (no sudo): argv,
// environment, folder and quoting arrive intact.
func TestCommandLineRunsInSh(t *testing.T) {
	line, err := CommandLine(false, node.Cmd{Argv: []string{"sh", "-c", `printf '%s|%s|%s' "$1" "$X" "$(pwd)"`, "sh", "a 'b' $c"}, Env: []string{"X=y z"}, Dir: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", line).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "a 'b' $c|y z|/tmp"; string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
}

func TestSudoErrors(t *testing.T) {
	n := &Node{cfg: Config{Name: "ctl1", User: "debian", Host: "10.0.0.11", Port: 22}}
	for _, c := range []struct {
		code   int
		stderr string
		want   string // "" for not a sudo failure
	}{
		{1, "sudo: a password is required\n", "sudo needs a password on ctl1: give debian NOPASSWD sudo"},
		{1, "Could not chdir to home directory /home/debian: No such file or directory\nsudo: a password is required\n", "sudo needs a password on ctl1"},
		{127, "sh: 1: sudo: not found\n", "sudo is not installed on ctl1"},
		{1, "debian is not in the sudoers file.\n", "may not use sudo on ctl1"},
		{1, "grep: no match\n", ""},
		{2, "", ""},
	} {
		err := n.sudoErr(c.code, c.stderr)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("exit %d %q: taken for a sudo failure: %v", c.code, c.stderr, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("exit %d %q: got %v, want %q", c.code, c.stderr, err, c.want)
		case c.want != "" && !strings.HasPrefix(err.Error(), "ctl1: debian@10.0.0.11:22: "):
			t.Errorf("the error does not name the host first: %v", err)
		}
	}
	root := &Node{cfg: Config{Name: "ctl1", User: "root"}}
	if err := root.sudoErr(1, "sudo: a password is required"); err != nil {
		t.Errorf("root uses no sudo, yet: %v", err)
	}
}

func TestChownSpec(t *testing.T) {
	for in, want := range map[string]string{"": "0:0", "root": "0:0", "rabbitmq": "rabbitmq:", "mysql:adm": "mysql:adm"} {
		if got := chownSpec(in); got != want {
			t.Errorf("chownSpec(%q) = %q, want %q", in, got, want)
		}
	}
}
