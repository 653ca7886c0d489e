package sshnode

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hastack/hastack/internal/node"
)

// packageHost answers 'systemctl show' for several units at once, as a
// host where apt installed mariadb-server: mariadb.socket enabled and
// listening, mariadb.service enabled.
type packageHost struct {
	units map[string][2]string // unit -> ActiveState, UnitFileState
	cmds  []string
}

func (h *packageHost) Name() string { return "ctl1" }
func (h *packageHost) WriteFile(context.Context, string, []byte, fs.FileMode, string) error {
	return nil
}
func (h *packageHost) Run(_ context.Context, c node.Cmd) (node.Result, error) {
	if len(c.Argv) > 2 && c.Argv[1] == "show" && strings.HasPrefix(c.Argv[2], "--property=Id,") {
		var blocks []string
		for _, u := range c.Argv[3:] {
			st, ok := h.units[u]
			if !ok {
				blocks = append(blocks, "Id="+u+"\nLoadState=not-found\nActiveState=inactive\nUnitFileState=")
				continue
			}
			blocks = append(blocks, "Id="+u+"\nLoadState=loaded\nActiveState="+st[0]+"\nUnitFileState="+st[1])
		}
		return node.Result{Stdout: []byte(strings.Join(blocks, "\n\n") + "\n")}, nil
	}
	if len(c.Argv) > 1 && c.Argv[1] == "show" {
		return node.Result{Stdout: []byte("LoadState=loaded\nActiveState=inactive\nMainPID=0\n")}, nil
	}
	h.cmds = append(h.cmds, strings.Join(c.Argv, " "))
	return node.Result{}, nil
}

func TestSystemdTakesOverMariaDBFromThePackage(t *testing.T) {
	h := &packageHost{units: map[string][2]string{
		"mariadb.socket":  {"active", "enabled"},
		"mariadb.service": {"inactive", "enabled"},
	}}
	if err := NewSystemd(h).Start(context.Background(), node.Service{Name: "mariadb", Argv: []string{"/usr/sbin/mariadbd", "--wsrep-new-cluster"}}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"systemctl disable --quiet mariadb.socket mariadb.service",
		"systemctl stop mariadb.socket",
		"galera_new_cluster",
	}
	if strings.Join(h.cmds, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran %q, want %q", h.cmds, want)
	}
	// Taken over already: nothing more than the start.
	h = &packageHost{units: map[string][2]string{"mariadb.socket": {"inactive", "disabled"}, "mariadb.service": {"inactive", "disabled"}}}
	if err := NewSystemd(h).Start(context.Background(), node.Service{Name: "mariadb", Argv: []string{"/usr/sbin/mariadbd"}}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"systemctl start mariadb.service"}; strings.Join(h.cmds, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran %q, want %q", h.cmds, want)
	}
}

func TestRefusedSessionIsNotABrokenConnection(t *testing.T) {
	if !refusedSession(&sessionError{&ssh.OpenChannelError{Reason: ssh.Prohibited, Message: "no more sessions"}}) {
		t.Error("sshd's 'no more sessions' taken for a broken connection")
	}
	if refusedSession(&sessionError{context.DeadlineExceeded}) {
		t.Error("a broken connection taken for a refused session")
	}
	if d := sessionRetryDelay(1); d != 50*time.Millisecond {
		t.Errorf("first retry after %s", d)
	}
	if d := sessionRetryDelay(20); d != time.Second {
		t.Errorf("retry delay not bounded: %s", d)
	}
}

func TestHostDeadline(t *testing.T) {
	if got := hostDeadline(context.Background(), "exec env true"); got != "exec env true" {
		t.Errorf("no deadline: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := hostDeadline(ctx, "exec sudo -n -- env true")
	if !strings.HasPrefix(got, "exec timeout -k 5 3") || !strings.HasSuffix(got, " sudo -n -- env true") {
		t.Errorf("with a deadline: %q", got)
	}
}
