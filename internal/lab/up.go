package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/spec"
)

// Folders every lab node has its own copy of. Configuration folders start
// as copies of the host's (what the Debian packages installed), so a fresh
// lab node looks like a host where the packages are installed and nothing
// has run yet; state folders start empty, with the host folder's owner and
// mode.
var (
	copiedDirs = []string{"/etc/mysql", "/etc/rabbitmq", "/etc/chrony", "/etc/haproxy", "/etc/keepalived", "/etc/sysctl.d"}
	emptyDirs  = []string{"/var/lib/mysql", "/var/lib/rabbitmq", "/var/lib/chrony", "/var/lib/haproxy", "/etc/hastack", "/var/lib/hastack", "/run", "/tmp", "/var/tmp", "/var/log"}
	// copiedFiles are single files copied from the host.
	copiedFiles = []string{"/etc/memcached.conf"}
)

// fileBinds are the single files bind-mounted into every node.
func fileBinds() []string {
	return append([]string{"/etc/hosts", "/etc/hostname"}, copiedFiles...)
}

// Up makes one virtual node per spec node (plus stand-ins for upstream time
// servers) and returns the lab. c must be valid. If a lab is already up for
// the same cluster, Up returns it unchanged.
func Up(ctx context.Context, c *spec.Cluster, specPath string, o Options) (*Lab, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab needs root: it creates network namespaces, bridges and mounts (run as root)")
	}
	if existing, err := Open(o); err == nil {
		s := existing.State()
		if s.Ready && s.Cluster == c.Metadata.Name && existing.allRunning() {
			o.Log("lab %q is already up (%d nodes); nothing to do", s.Cluster, len(s.Nodes))
			return existing, nil
		}
		return nil, fmt.Errorf("a lab for cluster %q is already recorded in %s (ready=%v); remove it first with 'hastack lab down'", s.Cluster, o.StateDir, s.Ready)
	} else if !errors.Is(err, ErrNoLab) {
		return nil, err
	}
	if specPath != "" {
		// Recorded for later commands (snapshots restart the layer with
		// 'up'), which may run from another folder.
		if abs, err := filepath.Abs(specPath); err == nil {
			specPath = abs
		}
	}
	var rel Release
	if o.OS != "" {
		if rel, err = ParseOS(o.OS); err != nil {
			return nil, err
		}
		if err := checkBootedTools(); err != nil {
			return nil, err
		}
	}
	st, err := plan(c, specPath, o)
	if err != nil {
		return nil, err
	}
	st.OS, st.Bare = rel.Name, o.Bare && rel.Name != ""
	if o.Bare && rel.Name == "" {
		return nil, errors.New("--bare needs --os: the namespace lab uses this machine's packages")
	}
	if err := preflight(ctx, st); err != nil {
		return nil, err
	}
	l := &Lab{opts: o, state: st}
	// Record the plan before making anything: Down works from it.
	if err := l.save(); err != nil {
		return nil, fmt.Errorf("writing the lab state: %w", err)
	}
	build := l.build
	if rel.Name != "" {
		build = func(ctx context.Context) error { return l.buildBooted(ctx, rel) }
	}
	if err := build(ctx); err != nil {
		return l, fmt.Errorf("%w\nthe lab is half-made; remove it with 'hastack lab down' and run 'hastack lab up' again", err)
	}
	l.mu.Lock()
	l.state.Ready = true
	l.mu.Unlock()
	return l, l.save()
}

func (l *Lab) build(ctx context.Context) error {
	start := time.Now()
	for i := range l.state.Networks {
		if err := l.makeBridge(ctx, i); err != nil {
			return err
		}
	}
	hosts := hostsFile(l.state)
	for i := range l.state.Nodes {
		if err := l.makeNode(ctx, i, hosts); err != nil {
			return fmt.Errorf("node %s: %w", l.state.Nodes[i].Name, err)
		}
	}
	for i := range l.state.Nodes {
		if l.state.Nodes[i].Extra != nil {
			if err := l.startUpstreamNTP(ctx, l.state.Nodes[i]); err != nil {
				return fmt.Errorf("node %s: %w", l.state.Nodes[i].Name, err)
			}
		}
	}
	l.opts.Log("lab %q up: %d nodes on %d networks in %s", l.state.Cluster, len(l.state.Nodes), len(l.state.Networks), time.Since(start).Round(time.Millisecond))
	return nil
}

// preflight refuses to touch anything that is not the lab's: existing links
// or namespaces with the lab's names, and lab networks that overlap the
// host's routes.
func preflight(ctx context.Context, s State) error {
	var problems []string
	links, err := hostLinks(ctx)
	if err != nil {
		return err
	}
	for _, n := range s.Networks {
		if _, ok := links[n.Bridge]; ok {
			problems = append(problems, fmt.Sprintf("a network interface named %s exists and is not this lab's: remove it, or run the lab with another prefix", n.Bridge))
		}
	}
	for _, n := range s.Nodes {
		for _, nic := range n.NICs {
			if _, ok := links[nic.HostVeth]; ok {
				problems = append(problems, fmt.Sprintf("a network interface named %s exists and is not this lab's: remove it, or run the lab with another prefix", nic.HostVeth))
			}
		}
		if _, err := os.Stat(filepath.Join("/run/netns", n.NetNS)); err == nil {
			problems = append(problems, fmt.Sprintf("network namespace %s exists and is not this lab's: remove it with 'ip netns delete %s' if it is stale", n.NetNS, n.NetNS))
		}
	}
	routes, err := hostRoutes(ctx)
	if err != nil {
		return err
	}
	for _, n := range s.Networks {
		p := netip.MustParsePrefix(n.CIDR)
		for _, r := range routes {
			if r.prefix.Overlaps(p) {
				problems = append(problems, fmt.Sprintf("lab network %s (%s) overlaps the host's route %s%s: pick another range in spec.networks", n.Name, p, r.text, r.dev))
			}
		}
	}
	if len(problems) > 0 {
		if lo := findLeftovers(ctx, s.Prefix); !lo.empty() {
			problems = append(problems, fmt.Sprintf("these look like a lab with prefix %q whose state is gone (%s): 'hastack lab down --prefix %s --state-dir $(mktemp -d)' removes them", s.Prefix, lo, s.Prefix))
		}
		return fmt.Errorf("cannot make the lab, nothing was changed:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

func (l *Lab) makeBridge(ctx context.Context, i int) error {
	n := l.state.Networks[i]
	p := netip.MustParsePrefix(n.CIDR)
	err := ipBatch(ctx, "", []string{
		fmt.Sprintf("link add name %s type bridge", n.Bridge),
	})
	if err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	l.mu.Lock()
	l.state.Networks[i].Created = true
	l.mu.Unlock()
	if err := l.save(); err != nil {
		return err
	}
	if err := ipBatch(ctx, "", []string{
		fmt.Sprintf("link set %s alias %s", n.Bridge, linkAlias(l.state.Prefix)),
		fmt.Sprintf("addr add %s/%d dev %s", n.HostIP, p.Bits(), n.Bridge),
		fmt.Sprintf("link set %s up", n.Bridge),
	}); err != nil {
		return fmt.Errorf("network %s: %w", n.Name, err)
	}
	// With bridge netfilter on, bridged frames traverse the host's FORWARD
	// chain, which may drop them (Docker sets its policy to DROP).
	if v, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil && strings.TrimSpace(string(v)) == "1" {
		rule := []string{"FORWARD", "-i", n.Bridge, "-o", n.Bridge, "-m", "comment", "--comment", linkAlias(l.state.Prefix), "-j", "ACCEPT"}
		if out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "-I"}, rule...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("network %s: allowing bridged traffic: iptables: %v: %s", n.Name, err, strings.TrimSpace(string(out)))
		}
		l.mu.Lock()
		l.state.ForwardRules = append(l.state.ForwardRules, rule)
		l.mu.Unlock()
		if err := l.save(); err != nil {
			return err
		}
	}
	l.opts.Log("network %s: bridge %s, host address %s/%d", n.Name, n.Bridge, n.HostIP, p.Bits())
	return nil
}

func linkAlias(prefix string) string { return "hastack-lab:" + prefix }

// wireNICs gives a node's network namespace (named n.NetNS) its NICs:
// a veth per NIC, the host end on the network's bridge, the node end
// addressed and up, and loopback up.
func (l *Lab) wireNICs(ctx context.Context, n NodeState) error {
	host := []string{}
	inside := []string{"link set lo up"}
	for _, nic := range n.NICs {
		host = append(host,
			fmt.Sprintf("link add %s type veth peer name %s netns %s", nic.HostVeth, nic.Name, n.NetNS),
			fmt.Sprintf("link set %s master %s up", nic.HostVeth, l.bridgeOf(nic.Network)),
			fmt.Sprintf("link set %s alias %s", nic.HostVeth, linkAlias(l.state.Prefix)))
		if nic.Address != "" {
			inside = append(inside, fmt.Sprintf("addr add %s/%d dev %s", nic.Address, nic.Prefix, nic.Name))
		}
		inside = append(inside, fmt.Sprintf("link set %s up", nic.Name))
	}
	if err := ipBatch(ctx, "", host); err != nil {
		return err
	}
	return ipBatch(ctx, n.NetNS, inside)
}

// makeNode lays out the node's folders, starts its init in new namespaces
// and wires its NICs.
func (l *Lab) makeNode(ctx context.Context, i int, hosts []byte) error {
	n := l.state.Nodes[i]
	binds, err := layoutNode(n, hosts)
	if err != nil {
		return err
	}
	pid, startTime, err := l.startInit(ctx, n, binds)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.state.Nodes[i].PID, l.state.Nodes[i].Start = pid, startTime
	l.mu.Unlock()
	if err := l.save(); err != nil {
		return err
	}
	if err := run(ctx, "ip", "netns", "attach", n.NetNS, fmt.Sprint(pid)); err != nil {
		return err
	}
	if err := l.wireNICs(ctx, n); err != nil {
		return err
	}
	l.opts.Log("%s: node up (%s, %s), pid %d", n.Name, n.Role, n.Address, pid)
	return nil
}

func (l *Lab) bridgeOf(network string) string {
	for _, n := range l.state.Networks {
		if n.Name == network {
			return n.Bridge
		}
	}
	return ""
}

// layoutNode creates the node's private folders on the host and returns the
// mounts its init makes.
func layoutNode(n NodeState, hosts []byte) ([]bind, error) {
	fsRoot := filepath.Join(n.Root, "fs")
	var binds []bind
	for _, d := range copiedDirs {
		dst := filepath.Join(fsRoot, d)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if _, err := os.Stat(d); err == nil {
			if out, err := exec.Command("cp", "-a", d, dst).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("copying %s: %v: %s", d, err, strings.TrimSpace(string(out)))
			}
		} else if err := os.MkdirAll(dst, 0o755); err != nil {
			return nil, err
		}
		binds = append(binds, bind{Source: dst, Target: d})
	}
	for _, d := range emptyDirs {
		dst := filepath.Join(fsRoot, d)
		if err := mkdirLike(dst, d); err != nil {
			return nil, err
		}
		binds = append(binds, bind{Source: dst, Target: d})
	}
	// /var/log keeps the host's folder tree (the packages' log folders with
	// their owners), without the host's logs.
	if err := copyTree("/var/log", filepath.Join(fsRoot, "/var/log")); err != nil {
		return nil, err
	}
	for _, f := range copiedFiles {
		dst := filepath.Join(fsRoot, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if data, err := os.ReadFile(f); err == nil {
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				return nil, err
			}
		} else if err := os.WriteFile(dst, nil, 0o644); err != nil {
			return nil, err
		}
		binds = append(binds, bind{Source: dst, Target: f, File: true})
	}
	for _, f := range []struct {
		path string
		data []byte
	}{{"/etc/hosts", hosts}, {"/etc/hostname", []byte(n.Name + "\n")}} {
		dst := filepath.Join(fsRoot, f.path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, f.data, 0o644); err != nil {
			return nil, err
		}
		binds = append(binds, bind{Source: dst, Target: f.path, File: true})
	}
	return binds, nil
}

// mkdirLike creates dst with the owner and mode of the host folder ref.
func mkdirLike(dst, ref string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	fi, err := os.Stat(ref)
	if err != nil {
		return nil // the host has no such folder; the node gets a root-owned one
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Chown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	return os.Chmod(dst, fi.Mode().Perm()|fi.Mode()&(fs.ModeSticky|fs.ModeSetgid))
}

// copyTree recreates the folders under src (not the files) below dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable parts of the host tree are skipped
		}
		if !d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "journal" {
			return filepath.SkipDir
		}
		return mkdirLike(filepath.Join(dst, rel), p)
	})
}

// startInit starts the node's init in new namespaces and waits for it to
// report that it has become the node.
func (l *Lab) startInit(ctx context.Context, n NodeState, binds []bind) (int, uint64, error) {
	logPath := filepath.Join(n.Root, "init.log")
	cfg, err := json.Marshal(initConfig{Name: n.Name, Binds: binds, Log: logPath})
	if err != nil {
		return 0, 0, err
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	cmd := exec.Command(l.opts.Exe)
	// argv[0] marks the process as this lab's node, for ps and for Down.
	cmd.Args = []string{initMarker(l.state.Prefix, n.Name)}
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", envInit + "=" + string(cfg)}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET,
		Setsid:     true,
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return 0, 0, fmt.Errorf("starting the node's init: %w", err)
	}
	w.Close()
	// Reap the init if it ends while this process lives (tests, long
	// commands); otherwise it is re-parented and outlives 'lab up'.
	go func() { _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	type reply struct {
		line string
		err  error
	}
	ch := make(chan reply, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		ch <- reply{strings.TrimSpace(line), err}
	}()
	select {
	case rep := <-ch:
		if rep.line != "ok" {
			msg := strings.TrimPrefix(rep.line, "error: ")
			if msg == "" {
				msg = fmt.Sprintf("it exited before it was ready (%v); see %s", rep.err, logPath)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return 0, 0, fmt.Errorf("node init: %s", msg)
		}
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return 0, 0, fmt.Errorf("node init did not report ready within 20s; see %s", logPath)
	case <-ctx.Done():
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return 0, 0, ctx.Err()
	}
	st, err := procStart(pid)
	if err != nil {
		return 0, 0, err
	}
	return pid, st, nil
}

func initMarker(prefix, name string) string { return "hastack-lab-node:" + prefix + ":" + name }

// startUpstreamNTP runs the stand-in for an upstream time server: chronyd
// serving its own clock as stratum 1, never steering the shared clock (-x).
func (l *Lab) startUpstreamNTP(ctx context.Context, n NodeState) error {
	nd, err := l.Node(n.Name)
	if err != nil {
		return err
	}
	conf := fmt.Sprintf(`# Written by hastack lab: a stand-in for the upstream time server %s of
# spec.ntp.upstream. The lab has no internet; this node serves the machine's
# clock as a stratum-1 source so the controllers have an upstream to follow.
local stratum 1
allow all
bindaddress %s
# Only the lab reads chronyc through the unix socket.
cmdport 0
`, n.Extra.Address, n.Extra.Address)
	if err := nd.WriteFile(ctx, "/etc/chrony/chrony.conf", []byte(conf), 0o644, ""); err != nil {
		return err
	}
	if _, err := nd.Run(ctx, node.Cmd{Argv: []string{"install", "-d", "-o", "_chrony", "-g", "_chrony", "-m", "0750", "/run/chrony"}}); err != nil {
		return err
	}
	if err := nd.Services().Start(ctx, node.Service{Name: "chrony", Argv: []string{"/usr/sbin/chronyd", "-d", "-x", "-f", "/etc/chrony/chrony.conf"}}); err != nil {
		return err
	}
	l.opts.Log("%s: stand-in upstream time server at %s (chronyd, stratum 1)", n.Name, n.Extra.Address)
	return nil
}

// allRunning reports whether every node's init is alive.
func (l *Lab) allRunning() bool {
	for _, n := range l.State().Nodes {
		if n.Booted != nil {
			if _, err := machineInit(n.Booted); err != nil {
				return false
			}
			continue
		}
		if !alive(n.PID, n.Start) {
			return false
		}
	}
	return true
}
