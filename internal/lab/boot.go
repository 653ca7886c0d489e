package lab

// The booted-host backend: with Options.OS set, every spec node is a Debian
// machine booted with systemd-nspawn, systemd as its PID 1, from a clone of
// a base image built once per release with debootstrap. The lab's network
// is the same as the namespace lab's (a network namespace per node, made by
// the lab, with the spec's NICs and static addresses): systemd-nspawn joins
// that namespace. The deploy never sees the difference: it reaches these
// nodes over SSH, as real hosts.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Release is a Debian release the lab can boot.
type Release struct {
	Name    string // debian-12
	Suite   string // bookworm
	Version string // 12
}

// Releases the booted-host lab knows, by --os name.
var Releases = []Release{
	{Name: "debian-12", Suite: "bookworm", Version: "12"},
	{Name: "debian-13", Suite: "trixie", Version: "13"},
}

// ParseOS returns the release named by --os.
func ParseOS(name string) (Release, error) {
	for _, r := range Releases {
		if r.Name == name {
			return r, nil
		}
	}
	var names []string
	for _, r := range Releases {
		names = append(names, r.Name)
	}
	return Release{}, fmt.Errorf("--os %q: unknown release; use one of %s", name, strings.Join(names, ", "))
}

// Packages of the base image. The first set makes a host one reaches over
// SSH; the engines' are installed as apt installs them, so their services
// are enabled and start at boot, as on a real host that had them installed.
var (
	baseImagePackages   = []string{"systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "iptables", "procps", "ca-certificates", "less", "iputils-ping"}
	engineImagePackages = []string{"chrony", "memcached", "mariadb-server", "mariadb-client", "galera-4", "mariadb-backup", "rsync", "socat", "rabbitmq-server", "haproxy", "keepalived"}
)

// DefaultMirror is where debootstrap and apt fetch the image's packages.
const DefaultMirror = "http://deb.debian.org/debian"

// EnvMirror overrides DefaultMirror.
const EnvMirror = "HASTACK_LAB_MIRROR"

// imageMarker is written last into a finished image: an image folder
// without it is never used.
const imageMarker = "etc/hastack-lab-image"

// BootedTools are the host commands a booted lab needs, with the Debian
// package of each.
var BootedTools = map[string]string{"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap", "nsenter": "util-linux", "ip": "iproute2", "dpkg-scanpackages": "dpkg-dev"}

func checkBootedTools() error {
	var missing []string
	for _, tool := range []string{"systemd-nspawn", "debootstrap", "nsenter", "ip", "dpkg-scanpackages"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, BootedTools[tool])
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		missing = slices.Compact(missing)
		return fmt.Errorf("a lab of booted hosts needs %s on this machine: apt-get install %s (or bash scripts/install-deps); nothing was changed", strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	return nil
}

// BootedState is what the lab records of a booted node.
type BootedState struct {
	// Wrapper is the host PID of the shell that runs systemd-nspawn (again
	// after a reboot); StartTime guards against PID reuse.
	Wrapper   int      `json:"wrapperPid"`
	StartTime uint64   `json:"wrapperStart"`
	RootFS    string   `json:"rootfs"`
	Console   string   `json:"console"`
	Cgroups   []string `json:"cgroups"`
	Machine   string   `json:"machine"`
	// Started is when systemd-nspawn was started (boot figures).
	Started time.Time `json:"started"`
	// Repo is the package repository the host sees at repoMount.
	Repo string `json:"repo,omitempty"`
}

// EnvImageDir places the base images elsewhere than <state>/images, so that
// labs with other state folders (tests) share them.
const EnvImageDir = "HASTACK_LAB_IMAGE_DIR"

func (l *Lab) imageDir(r Release, bare bool) string {
	name := r.Name
	if bare {
		name += "-bare"
	}
	if d := os.Getenv(EnvImageDir); d != "" {
		return filepath.Join(d, name)
	}
	return filepath.Join(l.opts.StateDir, "images", name)
}

// repoMount is where a booted host sees the lab's package repository.
const repoMount = "/srv/hastack-lab-repo"

// ensureImage returns the release's base image, building it when there is
// no finished one. A half-built image (no marker) is removed and built
// again, never used.
//
// Every package the engines need (downloaded while the image is built) is
// also kept as a package repository beside the image (<image>.repo, indexed
// with dpkg-scanpackages), which every host of the lab sees read-only as
// its only apt source: the hosts have no route out, yet hastack's packages
// phase runs apt-get install there for real. With bare, the image has none
// of the engines installed (the packages phase installs them).
func (l *Lab) ensureImage(ctx context.Context, r Release, bare bool) (string, error) {
	dir := l.imageDir(r, bare)
	if imageReady(dir) {
		l.opts.Log("image %s: using %s", r.Name, dir)
		return dir, nil
	}
	start := time.Now()
	tmp := dir + ".building"
	for _, d := range []string{dir, tmp, dir + ".repo"} {
		if _, err := os.Stat(d); err == nil {
			l.opts.Log("image %s: %s is not a finished image; removing it", r.Name, d)
			if err := removeTree(d); err != nil {
				return "", err
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	mirror := os.Getenv(EnvMirror)
	if mirror == "" {
		mirror = DefaultMirror
	}
	l.opts.Log("image %s: debootstrap %s from %s into %s (once per release; about a minute)", r.Name, r.Suite, mirror, tmp)
	bctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	if err := l.logged(bctx, filepath.Dir(dir), "debootstrap-"+r.Name+".log", exec.CommandContext(bctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(baseImagePackages, ","), r.Suite, tmp, mirror)); err != nil {
		return "", fmt.Errorf("image %s: debootstrap: %w", r.Name, err)
	}
	l.opts.Log("image %s: base system in %s; installing the engines' packages with apt-get", r.Name, time.Since(start).Round(time.Second))
	// Engines installed inside the image as on a real host: apt enables
	// their units. Nothing is started (there is no systemd running in the
	// build container; policy-rc.d refuses as well).
	if err := os.WriteFile(filepath.Join(tmp, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		return "", err
	}
	install := "apt-get install -y -q --no-install-recommends "
	if bare {
		install += "--download-only "
	}
	script := "set -e; apt-get update -qq; " + install + strings.Join(engineImagePackages, " ") +
		"; mkdir -p /hastack-repo; cp /var/cache/apt/archives/*.deb /hastack-repo/; apt-get clean; rm -rf /var/lib/apt/lists/*"
	cg, err := makeCgroups(l.state.Prefix + "-build-" + r.Name)
	if err != nil {
		return "", err
	}
	defer removeCgroups(cg)
	cmd := inCgroups(bctx, cg, "systemd-nspawn", "-q", "-D", tmp, "--register=no", "--keep-unit", "--resolv-conf=copy-host", "--timezone=off",
		"-E", "DEBIAN_FRONTEND=noninteractive", "sh", "-c", script)
	if err := l.logged(bctx, filepath.Dir(dir), "apt-"+r.Name+".log", cmd); err != nil {
		return "", fmt.Errorf("image %s: installing the engines' packages: %w", r.Name, err)
	}
	if err := os.Rename(filepath.Join(tmp, "hastack-repo"), dir+".repo"); err != nil {
		return "", err
	}
	if err := l.logged(bctx, dir+".repo", "dpkg-scanpackages.log", scanPackages(bctx, dir+".repo")); err != nil {
		return "", fmt.Errorf("image %s: indexing its package repository: %w", r.Name, err)
	}
	if err := finishImage(tmp, r); err != nil {
		return "", fmt.Errorf("image %s: %w", r.Name, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	l.opts.Log("image %s: built in %s (%s)", r.Name, time.Since(start).Round(time.Second), dir)
	return dir, nil
}

// finishImage makes the image a template: no host keys or machine ID of
// its own (each clone gets its own), chronyd allowed to run without
// steering the shared clock, and the marker last.
func finishImage(root string, r Release) error {
	_ = os.Remove(filepath.Join(root, "usr/sbin/policy-rc.d"))
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/machine-id"), nil, 0o444); err != nil {
		return err
	}
	// chrony.service is skipped in a container (ConditionCapability=
	// CAP_SYS_TIME). The lab never grants that capability, which would let
	// a node steer the machine's clock: chronyd runs with -x instead (it
	// serves and tracks time, but never sets the clock).
	dropIn := filepath.Join(root, "etc/systemd/system/chrony.service.d")
	if err := os.MkdirAll(dropIn, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dropIn, "hastack-lab.conf"), []byte(`# Written by hastack lab: every lab host shares one kernel clock, so chronyd
# must never set it (-x). A real host does not need this file.
[Unit]
ConditionCapability=
[Service]
ExecStart=
ExecStart=!/usr/sbin/chronyd $DAEMON_OPTS -x
`), 0o644); err != nil {
		return err
	}
	// sshd: only the host key the lab makes per clone, keys only.
	if err := os.WriteFile(filepath.Join(root, "etc/ssh/sshd_config.d/hastack-lab.conf"), []byte(`# Written by hastack lab.
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
`), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, imageMarker), []byte(fmt.Sprintf("%s %s\n%s\n", r.Name, time.Now().UTC().Format(time.RFC3339), strings.Join(engineImagePackages, " "))), 0o644)
}

// logged runs cmd with its output in a log file and, on failure, the tail of
// that log in the error.
func (l *Lab) logged(ctx context.Context, dir, name string, cmd *exec.Cmd) error {
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v; the last lines of %s:\n%s", err, path, tail(path, 15))
	}
	return nil
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// cgroupRoots are the hierarchies a booted node's systemd-nspawn is placed
// in. There is no systemd on this machine to make a scope for it, so the
// lab makes a folder of its own in each.
var cgroupRoots = []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"}

func makeCgroups(name string) ([]string, error) {
	var out []string
	for _, r := range cgroupRoots {
		if _, err := os.Stat(filepath.Join(r, "cgroup.procs")); err != nil {
			continue
		}
		d := filepath.Join(r, "hastack-lab-"+name)
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return out, fmt.Errorf("making cgroup %s: %w", d, err)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		// A machine with only cgroup v2 at /sys/fs/cgroup.
		d := filepath.Join("/sys/fs/cgroup", "hastack-lab-"+name)
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return out, fmt.Errorf("making cgroup %s: %w", d, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// removeCgroups removes cgroup folders, innermost first; a folder that
// still holds processes stays, and is named in the error.
func removeCgroups(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		var sub []string
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				sub = append(sub, p)
			}
			return nil
		})
		slices.Reverse(sub)
		for _, s := range sub {
			var err error
			for i := 0; i < 50; i++ {
				if err = syscall.Rmdir(s); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("removing cgroup %s: %w", s, err))
			}
		}
	}
	return errors.Join(errs...)
}

// inCgroups returns a command that first moves itself into the cgroups,
// then runs argv.
func inCgroups(ctx context.Context, cgroups []string, argv ...string) *exec.Cmd {
	var b strings.Builder
	for _, c := range cgroups {
		fmt.Fprintf(&b, "echo $$ > %s/cgroup.procs || exit 125; ", shellQuote(c))
	}
	b.WriteString(`exec "$@"`)
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c", b.String(), "sh"}, argv...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	return cmd
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// removeTree removes a folder, unmounting first whatever is mounted below
// it (a build or a machine cut short).
func removeTree(dir string) error {
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil {
		var below []string
		for _, line := range strings.Split(string(mounts), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
				below = append(below, f[1])
			}
		}
		slices.Reverse(below)
		for _, m := range below {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	return os.RemoveAll(dir)
}

// cloneNode copies the image into the node's root and makes it this host:
// hostname, /etc/hosts, machine ID, its own SSH host key, the lab's client
// key authorized for root.
func (l *Lab) cloneNode(ctx context.Context, n NodeState, image string, hosts []byte, client ssh.PublicKey) (string, error) {
	root := filepath.Join(n.Root, "rootfs")
	if err := os.MkdirAll(n.Root, 0o700); err != nil {
		return "", err
	}
	if _, err := os.Stat(root); err == nil {
		if err := removeTree(root); err != nil {
			return "", err
		}
	}
	if err := run(ctx, "cp", "-a", "--reflink=auto", image, root); err != nil {
		return "", fmt.Errorf("cloning the image: %w", err)
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	key, pub, err := newKey("root@" + n.Name)
	if err != nil {
		return "", err
	}
	files := []struct {
		path string
		data []byte
		mode fs.FileMode
	}{
		{"etc/hostname", []byte(n.Name + "\n"), 0o644},
		{"etc/hosts", hosts, 0o644},
		{"etc/machine-id", []byte(hex.EncodeToString(id) + "\n"), 0o444},
		{"etc/ssh/ssh_host_ed25519_key", key, 0o600},
		{"etc/ssh/ssh_host_ed25519_key.pub", ssh.MarshalAuthorizedKey(pub), 0o644},
		{"root/.ssh/authorized_keys", ssh.MarshalAuthorizedKey(client), 0o600},
		// The host's only package source: the lab's repository (it has
		// no route to a mirror).
		{"etc/apt/sources.list", []byte("# Written by hastack lab: this host reaches no mirror; its packages come from\n# the lab's repository (sources.list.d/hastack-lab.list).\n"), 0o644},
		{"etc/apt/sources.list.d/hastack-lab.list", []byte("deb [trusted=yes] file:" + repoMount + " ./\n"), 0o644},
	}
	_ = os.Remove(filepath.Join(root, "etc/apt/sources.list.d/debian.sources"))
	for _, f := range files {
		p := filepath.Join(root, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return "", err
		}
		_ = os.Remove(p)
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return "", err
		}
	}
	return root, nil
}

// makeBootedNode makes the node's network namespace and NICs, clones the
// image and boots it with systemd-nspawn in that namespace.
func (l *Lab) makeBootedNode(ctx context.Context, i int, image string, hosts []byte, client ssh.PublicKey) error {
	n := l.state.Nodes[i]
	start := time.Now()
	if err := run(ctx, "ip", "netns", "add", n.NetNS); err != nil {
		return err
	}
	if err := l.wireNICs(ctx, n); err != nil {
		return err
	}
	b := &BootedState{Machine: l.state.Prefix + "-" + n.Name, Console: filepath.Join(n.Root, "console.log"), Repo: image + ".repo"}
	l.mu.Lock()
	l.state.Nodes[i].Booted = b
	l.mu.Unlock()
	root, err := l.cloneNode(ctx, n, image, hosts, client)
	b.RootFS = filepath.Join(n.Root, "rootfs")
	if err != nil {
		return err
	}
	cloned := time.Since(start)
	cg, err := makeCgroups(b.Machine)
	b.Cgroups = cg
	if err != nil {
		return err
	}
	if err := l.save(); err != nil {
		return err
	}
	if err := l.startMachine(n, b, root); err != nil {
		return err
	}
	if err := l.save(); err != nil {
		return err
	}
	l.opts.Log("%s: cloned in %s, systemd-nspawn started (%s, %s)", n.Name, cloned.Round(100*time.Millisecond), n.Role, n.Address)
	return nil
}

// startMachine runs systemd-nspawn under a shell that starts it again when
// the machine reboots (exit status 133), as systemd-nspawn@.service would.
func (l *Lab) startMachine(n NodeState, b *BootedState, root string) error {
	console, err := os.OpenFile(b.Console, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer console.Close()
	nspawn := []string{"systemd-nspawn", "--boot", "--directory=" + root, "--machine=" + b.Machine, "--hostname=" + n.Name,
		"--register=no", "--keep-unit", "--network-namespace-path=/run/netns/" + n.NetNS,
		"--console=pipe", "--resolv-conf=off", "--timezone=off", "--link-journal=no", "--kill-signal=SIGRTMIN+3",
		// The network namespace is the node's own: keepalived adds the VIP
		// there, as systemd-nspawn allows in namespaces it makes itself.
		"--capability=CAP_NET_ADMIN"}
	if b.Repo != "" {
		nspawn = append(nspawn, "--bind-ro="+b.Repo+":"+repoMount)
	}
	loop := `while :; do "$@" </dev/null; rc=$?; [ "$rc" = 133 ] || exit "$rc"; echo "hastack lab: the machine rebooted; booting it again"; done`
	cmd := inCgroups(context.Background(), b.Cgroups, append([]string{"sh", "-c", loop, "sh"}, nspawn...)...)
	// The node's network namespace is its own (made by the lab), so its
	// /proc/sys/net is writable as on a real host (HAProxy's VIP needs
	// net.ipv4.ip_nonlocal_bind); systemd-nspawn only knows that for the
	// namespaces it makes itself.
	cmd.Env = append(cmd.Env, "SYSTEMD_NSPAWN_API_VFS_WRITABLE=network")
	cmd.Stdout, cmd.Stderr = console, console
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting systemd-nspawn: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	st, err := procStart(cmd.Process.Pid)
	if err != nil {
		return err
	}
	b.Wrapper, b.StartTime, b.Started = cmd.Process.Pid, st, time.Now()
	return nil
}

// machineInit finds the host PID of a booted node's PID 1 (systemd): the
// process below the node's systemd-nspawn that is in another PID namespace.
// It changes when the machine reboots.
func machineInit(b *BootedState) (int, error) {
	if b == nil || !alive(b.Wrapper, b.StartTime) {
		return 0, errors.New("its systemd-nspawn is not running")
	}
	hostNS, _ := nsInode(os.Getpid(), "pid")
	children := childrenOf()
	// wrapper sh -> (sh ->) systemd-nspawn -> init
	queue := []int{b.Wrapper}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if ns, err := nsInode(c, "pid"); err == nil && ns != hostNS {
				if procState(c) != "Z" {
					return c, nil
				}
			}
			queue = append(queue, c)
		}
	}
	return 0, errors.New("the machine is not running (between a reboot's end and its next boot?)")
}

// childrenOf maps every process to its children.
func childrenOf() map[int][]int {
	out := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out[ppid] = append(out[ppid], pid)
	}
	return out
}

// BootTimeout bounds how long a booted node may take to reach
// 'systemctl is-system-running' = running (or degraded).
const BootTimeout = 3 * time.Minute

// waitBooted waits until the node's systemd reports the boot finished and
// sshd accepts connections. On failure the console's last lines are in the
// error.
func (l *Lab) waitBooted(ctx context.Context, n NodeState) error {
	ctx, cancel := context.WithTimeout(ctx, BootTimeout)
	defer cancel()
	last := ""
	fail := func(why string) error {
		return fmt.Errorf("did not boot within %s: %s; the last lines of its console (%s):\n%s", BootTimeout, why, n.Booted.Console, tail(n.Booted.Console, 25))
	}
	for {
		if pid, err := machineInit(n.Booted); err != nil {
			if !alive(n.Booted.Wrapper, n.Booted.StartTime) {
				return fail("systemd-nspawn exited")
			}
			last = err.Error()
		} else {
			out, _ := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(pid), "-m", "-u", "-i", "-n", "-p", "--", "systemctl", "is-system-running").Output()
			state := strings.TrimSpace(string(out))
			last = "systemctl is-system-running says " + strconv.Quote(state)
			if state == "running" || state == "degraded" {
				if state == "degraded" {
					failed, _ := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(pid), "-m", "-u", "-i", "-n", "-p", "--", "systemctl", "--failed", "--plain", "--no-legend").Output()
					l.opts.Log("%s: booted degraded; failed units: %s", n.Name, strings.Join(strings.Fields(firstColumn(string(failed))), " "))
				}
				if err := waitTCP(ctx, n.Address+":22"); err != nil {
					return fail("sshd: " + err.Error())
				}
				l.opts.Log("%s: booted (systemd %s, sshd answers) %s after systemd-nspawn started", n.Name, state, time.Since(n.Booted.Started).Round(100*time.Millisecond))
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fail(last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func firstColumn(s string) string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	return strings.Join(out, " ")
}

// buildBooted makes a lab of booted hosts: bridges, the image, one machine
// per spec node, and the namespace lab's stand-in time servers.
func (l *Lab) buildBooted(ctx context.Context, r Release) error {
	start := time.Now()
	image, err := l.ensureImage(ctx, r, l.state.Bare)
	if err != nil {
		return err
	}
	_, client, err := l.clientKey()
	if err != nil {
		return err
	}
	for i := range l.state.Networks {
		if err := l.makeBridge(ctx, i); err != nil {
			return err
		}
	}
	hosts := hostsFile(l.state)
	for i := range l.state.Nodes {
		n := l.state.Nodes[i]
		if n.Extra != nil {
			if err := l.makeNode(ctx, i, hosts); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
			if err := l.startUpstreamNTP(ctx, l.state.Nodes[i]); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
			continue
		}
		if err := l.makeBootedNode(ctx, i, image, hosts, client); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, n := range l.State().Nodes {
		if n.Booted == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.waitBooted(ctx, n); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("node %s: %w", n.Name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	l.opts.Log("lab %q up: %d booted %s hosts on %d networks in %s", l.state.Cluster, len(l.state.Nodes), r.Name, len(l.state.Networks), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// stopBooted ends a booted node: its machine (every process in it dies
// with its PID 1), the shell that would boot it again, its cgroups.
func stopBooted(b *BootedState) error {
	if b == nil {
		return nil
	}
	if alive(b.Wrapper, b.StartTime) {
		_ = syscall.Kill(b.Wrapper, syscall.SIGKILL)
	}
	for _, c := range b.Cgroups {
		killCgroup(c)
	}
	return removeCgroups(b.Cgroups)
}

// killCgroup kills every process in a cgroup folder and below, until none
// is left.
func killCgroup(dir string) {
	for round := 0; round < 100; round++ {
		var pids []int
		_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids = append(pids, pid)
				}
			}
			return nil
		})
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leftoverCgroups finds the cgroup folders of a prefix's booted nodes.
func leftoverCgroups(prefix string) []string {
	var out []string
	for _, r := range append(slices.Clone(cgroupRoots), "/sys/fs/cgroup") {
		m, _ := filepath.Glob(filepath.Join(r, "hastack-lab-"+prefix+"-*"))
		out = append(out, m...)
	}
	return out
}

// Reboot reboots booted hosts: systemd inside each stops every service
// cleanly and the machine boots again (the shell around systemd-nspawn
// starts it once more). It returns once every host is up again, or says
// which did not come back, with its console's last lines.
func (l *Lab) Reboot(ctx context.Context, names []string) ([]string, error) {
	var nodes []NodeState
	for _, name := range names {
		n, err := l.nodeState(name)
		if err != nil {
			return nil, err
		}
		if n.Booted == nil {
			return nil, fmt.Errorf("%s is a namespace node, not a booted host: only a lab made with 'lab up --os' can reboot its nodes", name)
		}
		if _, err := machineInit(n.Booted); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		nodes = append(nodes, n)
	}
	var mu sync.Mutex
	var lines []string
	var errs []error
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			err := l.rebootOne(ctx, n)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
				return
			}
			lines = append(lines, fmt.Sprintf("%s: rebooted: systemd stopped cleanly and booted again in %s", n.Name, time.Since(start).Round(100*time.Millisecond)))
		}()
	}
	wg.Wait()
	slices.Sort(lines)
	return lines, errors.Join(errs...)
}

func (l *Lab) rebootOne(ctx context.Context, n NodeState) error {
	old, err := machineInit(n.Booted)
	if err != nil {
		return err
	}
	oldStart, _ := procStart(old)
	if out, err := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(old), "-m", "-u", "-i", "-n", "-p", "--", "systemctl", "reboot").CombinedOutput(); err != nil {
		return fmt.Errorf("systemctl reboot: %v: %s", err, strings.TrimSpace(string(out)))
	}
	// The old PID 1 ends once every service stopped; a new one boots.
	deadline := time.Now().Add(BootTimeout)
	for {
		if pid, err := machineInit(n.Booted); err == nil {
			if st, _ := procStart(pid); pid != old || st != oldStart {
				break
			}
		} else if !alive(n.Booted.Wrapper, n.Booted.StartTime) {
			return fmt.Errorf("systemd-nspawn did not boot it again; the last lines of its console (%s):\n%s", n.Booted.Console, tail(n.Booted.Console, 25))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still not rebooted after %s; the last lines of its console (%s):\n%s", BootTimeout, n.Booted.Console, tail(n.Booted.Console, 25))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	b := *n.Booted
	b.Started = time.Now()
	n.Booted = &b
	return l.waitBooted(ctx, n)
}

// refuseBooted refuses what the booted-host lab does not do yet.
func (l *Lab) refuseBooted(what string) error {
	if os := l.State().OS; os != "" {
		return fmt.Errorf("lab %s: not supported yet on a lab of booted hosts (%s); nothing was changed", what, os)
	}
	return nil
}

// scanPackages indexes a folder of .deb files as a flat apt repository.
func scanPackages(ctx context.Context, dir string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "sh", "-c", "dpkg-scanpackages -m . >Packages.tmp && mv Packages.tmp Packages")
	cmd.Dir = dir
	return cmd
}

// imageReady reports whether dir is a finished image: its marker (written
// last) and its package repository's index are there.
func imageReady(dir string) bool {
	_, repoErr := os.Stat(filepath.Join(dir+".repo", "Packages"))
	_, err := os.Stat(filepath.Join(dir, imageMarker))
	return err == nil && repoErr == nil
}
