package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/hastack/hastack/internal/supervise"
)

// envInit carries a node's init configuration from 'lab up' to the node's
// init process (this binary, re-executed in new namespaces). An environment
// variable rather than a subcommand, so test binaries can be nodes too: they
// call MaybeRunInit from TestMain.
const envInit = "HASTACK_LAB_NODE_INIT"

// SupervisorSocket is where a lab node's supervisor listens, inside the node.
const SupervisorSocket = "/run/hastack/supervisor.sock"

// initConfig is what a node's init needs to become the node.
type initConfig struct {
	Name  string `json:"name"`
	Binds []bind `json:"binds"` // private folders and files, mounted in order
	Log   string `json:"log"`
}

// bind mounts a host path (under the node's folder) over a standard path.
type bind struct {
	Source string `json:"source"`
	Target string `json:"target"`
	File   bool   `json:"file,omitempty"`
}

// MaybeRunInit turns this process into a lab node's init when it was started
// as one, and never returns then. main and TestMain call it first.
func MaybeRunInit() {
	cfg := os.Getenv(envInit)
	if cfg == "" {
		return
	}
	os.Exit(runInit(cfg))
}

// runInit is PID 1 of a lab node. It reports readiness (or why not) on fd 3,
// then serves the node's supervisor until told to stop.
func runInit(raw string) int {
	ready := os.NewFile(3, "ready")
	fail := func(format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		fmt.Fprintln(os.Stderr, "lab node init:", msg)
		if ready != nil {
			fmt.Fprintln(ready, "error:", msg)
			ready.Close()
		}
		return 1
	}
	os.Unsetenv(envInit)
	var c initConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return fail("bad init configuration: %v", err)
	}
	if os.Getpid() != 1 {
		return fail("not PID 1 of a new PID namespace (pid %d)", os.Getpid())
	}
	if err := becomeNode(c); err != nil {
		return fail("%s: %v", c.Name, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// The node is ready once its supervisor listens: the lab starts
	// services on it right after (the NTP stand-in), and a ready node
	// whose socket is not there yet refused them under load.
	srv := supervise.NewServer(supervise.Options{SocketPath: SupervisorSocket, ReapOrphans: true, Log: os.Stderr, Ready: func() {
		fmt.Fprintln(ready, "ok")
		ready.Close()
	}})
	if err := srv.Serve(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "lab node init: supervisor:", err)
		return 1
	}
	return 0
}

// becomeNode gives the namespaces their node identity: private mounts, the
// node's own folders over the standard paths, fresh /proc and /sys, hostname.
func becomeNode(c initConfig) error {
	// Nothing mounted here may propagate back to the host.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	// Open every source first: the state folder may lie under a folder
	// that one of the mounts hides (/tmp, /var/lib/hastack), so later
	// sources are reached through their descriptors, not their paths.
	fds := make([]int, len(c.Binds))
	for i, b := range c.Binds {
		if err := ensureTarget(b); err != nil {
			return err
		}
		fd, err := syscall.Open(b.Source, oPath|syscall.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening %s: %w", b.Source, err)
		}
		fds[i] = fd
	}
	for i, b := range c.Binds {
		src := fmt.Sprintf("/proc/self/fd/%d", fds[i])
		if err := syscall.Mount(src, b.Target, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mounting %s over %s: %w", b.Source, b.Target, err)
		}
		syscall.Close(fds[i])
	}
	// A /proc of this PID namespace: ps, pgrep (keepalived's track script)
	// and pidfile checks see only this node's processes.
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	// A /sys of this network namespace: /sys/class/net lists the node's NICs.
	if err := syscall.Mount("sysfs", "/sys", "sysfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC|syscall.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mounting /sys: %w", err)
	}
	if err := syscall.Mount("shm", "/dev/shm", "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=1777"); err != nil {
		return fmt.Errorf("mounting /dev/shm: %w", err)
	}
	if err := syscall.Sethostname([]byte(c.Name)); err != nil {
		return fmt.Errorf("setting hostname: %w", err)
	}
	return os.MkdirAll(filepath.Dir(SupervisorSocket), 0o755)
}

// ensureTarget makes sure a mount point exists. Targets normally exist
// (the packages create them); a missing one is created empty on the host.
func ensureTarget(b bind) error {
	_, err := os.Stat(b.Target)
	if err == nil {
		return nil
	}
	if !os.IsNotExist(err) {
		return err
	}
	if b.File {
		if err := os.MkdirAll(filepath.Dir(b.Target), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(b.Target, os.O_CREATE|os.O_WRONLY, fs.FileMode(0o644))
		if err != nil {
			return err
		}
		return f.Close()
	}
	return os.MkdirAll(b.Target, 0o755)
}

// oPath is Linux's O_PATH (the same value on every architecture Go
// supports on Linux except alpha/parisc/sparc), absent from package syscall.
const oPath = 0x200000
