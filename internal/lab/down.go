package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Down removes everything a lab made: node processes (every process of each
// node dies with its init), network namespaces, veths, bridges, host
// firewall rules, and the lab's files. It is idempotent, works after a
// half-finished Up, and finds leftovers by their marks (process argv[0],
// link alias) when the state file is gone.
func Down(ctx context.Context, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("removing the lab needs root (run as root)")
	}
	var st State
	if l, err := Open(o); err == nil {
		st = l.State()
	} else if !errors.Is(err, ErrNoLab) {
		// A state written by another lab (another prefix) or one that does
		// not parse: removing it blindly would orphan the namespaces and
		// firewall rules it records. Say so and change nothing.
		return fmt.Errorf("lab down: %w; nothing was removed (give the lab's own --prefix, or remove %s by hand once its lab is gone)", err, filepath.Join(o.StateDir, "lab.json"))
	}
	var errs []error
	// 1. Processes: killing a PID namespace's init kills every process in it.
	var pids []int
	for _, n := range st.Nodes {
		if alive(n.PID, n.Start) {
			pids = append(pids, n.PID)
		}
	}
	pids = append(pids, markedInits(o.Prefix)...)
	// Booted hosts: the machine, the shell that reboots it, its cgroups
	// (also a half-made lab's, found by name).
	for _, n := range st.Nodes {
		if err := stopBooted(n.Booted); err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
		}
	}
	for _, c := range leftoverCgroups(o.Prefix) {
		killCgroup(c)
		if err := removeCgroups([]string{c}); err != nil {
			errs = append(errs, err)
		}
	}
	killed := map[int]bool{}
	for _, pid := range pids {
		if killed[pid] {
			continue
		}
		killed[pid] = true
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("killing node init %d: %w", pid, err))
		}
	}
	for pid := range killed {
		waitGone(pid, 10*time.Second)
	}
	// 2. Network namespaces.
	for _, n := range st.Nodes {
		p := filepath.Join("/run/netns", n.NetNS)
		if _, err := os.Stat(p); err == nil {
			_ = syscall.Unmount(p, syscall.MNT_DETACH)
			if err := os.Remove(p); err != nil {
				errs = append(errs, fmt.Errorf("removing network namespace %s: %w", n.NetNS, err))
			}
		}
	}
	// 3. Links: host veths vanish with their namespace; bridges (and the
	// host veths of labs made since) carry the lab's alias.
	links, err := hostLinks(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range st.Nodes {
		for _, nic := range n.NICs {
			if _, ok := links[nic.HostVeth]; ok {
				// The kernel removes a veth with its namespace, a little
				// after the namespace's last process is gone: a veth that
				// vanished meanwhile is not an error.
				if err := run(ctx, "ip", "link", "del", nic.HostVeth); err != nil && !linkGone(ctx, nic.HostVeth, 3*time.Second) {
					errs = append(errs, err)
				}
			}
		}
	}
	for name, l := range links {
		if l.Alias == linkAlias(o.Prefix) {
			// Bridges, and host veths (which may be going already with
			// their namespace).
			if err := run(ctx, "ip", "link", "del", name); err != nil && !linkGone(ctx, name, 3*time.Second) {
				errs = append(errs, err)
			}
		}
	}
	// 4. Host firewall rules.
	for _, rule := range st.ForwardRules {
		for exec.CommandContext(ctx, "iptables", append([]string{"-w", "-C"}, rule...)...).Run() == nil {
			if err := run(ctx, "iptables", append([]string{"-w", "-D"}, rule...)...); err != nil {
				errs = append(errs, err)
				break
			}
		}
	}
	// 5. What a lab whose state is gone left behind, found by its marks
	// (and what the state above did not name).
	lo := findLeftovers(ctx, o.Prefix)
	if err := removeLeftovers(ctx, lo); err != nil {
		errs = append(errs, err)
	}
	// 6. Files: only what the lab writes, never the whole state folder (it
	// may be an operator's choice of folder).
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lab down: %w\nthe state in %s is kept; fix the above and run 'hastack lab down' again", err, o.StateDir)
	}
	for _, p := range []string{"nodes", "snapshots", "lab.json", "lab.json.tmp"} {
		if err := removeTree(filepath.Join(o.StateDir, p)); err != nil {
			return fmt.Errorf("removing %s: %w", filepath.Join(o.StateDir, p), err)
		}
	}
	_ = os.Remove(o.StateDir) // only if empty
	if st.Cluster != "" {
		o.Log("lab %q down: %d nodes and %d networks removed", st.Cluster, len(st.Nodes), len(st.Networks))
	} else if len(killed) > 0 || !lo.empty() {
		o.Log("lab down: leftovers of a lab with prefix %q removed: %d node processes, %s", o.Prefix, len(killed), lo)
	} else {
		o.Log("no lab was up; nothing to do")
	}
	return nil
}

// markedInits finds node inits of a lab prefix by their argv[0].
func markedInits(prefix string) []int {
	ents, _ := os.ReadDir("/proc")
	want := "hastack-lab-node:" + prefix + ":"
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.HasPrefix(string(cmd), want) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitGone waits until pid has exited and been reaped, or the time is up.
func waitGone(pid int, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return
		}
		if procState(pid) == "Z" {
			// A zombie of a process that is not ours to reap (or our Wait
			// goroutine has not run yet): it holds no namespace.
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func linkExists(ctx context.Context, name string) bool {
	return exec.CommandContext(ctx, "ip", "link", "show", "dev", name).Run() == nil
}
