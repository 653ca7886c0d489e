package lab

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/hastack/hastack/internal/node"
)

// Where a lab node keeps its sshd's files. /etc/ssh and root's home are the
// host machine's in a lab node (not private), so the node's host key, its
// authorized keys and its sshd configuration live in /etc/hastack, which
// is.
const (
	sshDir         = "/etc/hastack/ssh"
	sshConfigPath  = sshDir + "/sshd_config"
	sshHostKeyPath = sshDir + "/ssh_host_ed25519_key"
	sshAuthDir     = sshDir + "/authorized_keys"
	// SSHService is the name of sshd under a lab node's supervisor.
	SSHService = "sshd"
)

// SSHAccess is how hastack reaches the lab's nodes over SSH.
type SSHAccess struct {
	User         string
	IdentityFile string // the lab's client key, in the state folder
	KnownHosts   string // every spec node's host key, by management address
	Nodes        []string
}

// EnableSSH makes every spec node reachable over SSH like a real host: an
// sshd on the node's management address, port 22, under the node's
// supervisor, with a host key of the node's own; the lab's client key
// (generated once into the state folder) authorized for root; and the
// nodes' host keys written to knownHosts. It is idempotent: keys are kept,
// and sshd is restarted only when its configuration changed.
func (l *Lab) EnableSSH(ctx context.Context, knownHosts string) (SSHAccess, error) {
	st := l.State()
	key, pub, err := l.clientKey()
	if err != nil {
		return SSHAccess{}, err
	}
	acc := SSHAccess{User: "root", IdentityFile: key, KnownHosts: knownHosts}
	var mu sync.Mutex
	lines := map[string]string{}
	var wg sync.WaitGroup
	var errs []error
	for _, ns := range st.Nodes {
		if ns.Extra != nil {
			continue // the time server stand-ins are not spec nodes
		}
		acc.Nodes = append(acc.Nodes, ns.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := l.startSSHD
			if ns.Booted != nil {
				start = l.bootedSSHD
			}
			line, err := start(ctx, ns, pub)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: starting sshd: %w", ns.Name, err))
				return
			}
			lines[ns.Name] = line
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return acc, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by 'hastack lab up --ssh': the host key of every node of lab %q.\n", st.Cluster)
	names := make([]string, 0, len(lines))
	for n := range lines {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.WriteString(lines[n] + "\n")
	}
	if err := writeFileAtomic(knownHosts, []byte(b.String()), 0o644); err != nil {
		return acc, fmt.Errorf("writing %s: %w", knownHosts, err)
	}
	l.opts.Log("ssh: %d nodes reachable as root with %s; host keys in %s", len(names), key, knownHosts)
	return acc, nil
}

// clientKey returns the lab's client key file and public key, making the
// key on first use.
func (l *Lab) clientKey() (path string, pub ssh.PublicKey, err error) {
	dir := filepath.Join(l.opts.StateDir, "ssh")
	path = filepath.Join(dir, "id_ed25519")
	if data, err := os.ReadFile(path); err == nil {
		s, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return "", nil, fmt.Errorf("the lab's client key %s: %w (remove it to make a new one)", path, err)
		}
		return path, s.PublicKey(), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	data, pk, err := newKey("hastack-lab-" + l.state.Prefix)
	if err != nil {
		return "", nil, err
	}
	if err := writeFileAtomic(path, data, 0o600); err != nil {
		return "", nil, err
	}
	if err := writeFileAtomic(path+".pub", ssh.MarshalAuthorizedKey(pk), 0o644); err != nil {
		return "", nil, err
	}
	return path, pk, nil
}

// newKey makes an ed25519 key: its private half in OpenSSH's format.
func newKey(comment string) ([]byte, ssh.PublicKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, err
	}
	pk, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(block), pk, nil
}

// sshdConfig is a lab node's sshd configuration: key authentication for
// root only, on the management address.
func sshdConfig(n NodeState) string {
	return fmt.Sprintf(`# Written by hastack lab: the sshd of lab node %s, so that hastack reaches it
# over SSH exactly as it reaches a real host.
ListenAddress %s:22
HostKey %s
# /root is the host machine's, not the node's: keys are authorized in a
# folder of the node's own, one file per user.
AuthorizedKeysFile %s/%%u
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# No PAM: its session modules (loginuid, systemd) expect a machine of its own.
UsePAM no
# hastack reaches the node's supervisor socket through SSH. sshd lets a
# socket be reached only when local TCP forwarding is allowed too.
AllowStreamLocalForwarding local
AllowTcpForwarding local
AllowAgentForwarding no
X11Forwarding no
# The host's ~root/.ssh/rc must not run in every node.
PermitUserRC no
# Nor the host's ~root/.bashrc: Debian's bash reads it for every command sshd
# runs, unless it is not the first shell. It is the host's, not the node's,
# and may be slow or noisy.
SetEnv SHLVL=1
PrintMotd no
PrintLastLog no
PidFile /run/sshd.pid
`, n.Name, n.Address, sshHostKeyPath, sshAuthDir)
}

// SSHDService is how a lab node's supervisor runs sshd: in the foreground,
// logging to its output, with the node's own configuration.
var SSHDService = node.Service{Name: SSHService, Argv: []string{"/usr/sbin/sshd", "-D", "-e", "-f", sshConfigPath}}

// startSSHD sets up and starts one node's sshd and returns the node's
// known_hosts line.
func (l *Lab) startSSHD(ctx context.Context, ns NodeState, client ssh.PublicKey) (string, error) {
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		return "", errors.New("/usr/sbin/sshd is missing: install openssh-server on this machine (bash scripts/install-deps)")
	}
	nd, err := l.Node(ns.Name)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// The host key: kept once made, so known_hosts stays true across runs.
	var hostPub ssh.PublicKey
	if data, err := nd.ReadFile(ctx, sshHostKeyPath); err == nil {
		s, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return "", fmt.Errorf("host key %s: %w", sshHostKeyPath, err)
		}
		hostPub = s.PublicKey()
	} else if errors.Is(err, fs.ErrNotExist) {
		data, pk, err := newKey("root@" + ns.Name)
		if err != nil {
			return "", err
		}
		if err := nd.WriteFile(ctx, sshHostKeyPath, data, 0o600, ""); err != nil {
			return "", err
		}
		hostPub = pk
	} else {
		return "", err
	}
	changed := false
	for _, f := range []struct {
		path string
		data []byte
	}{
		{sshAuthDir + "/root", ssh.MarshalAuthorizedKey(client)},
		{sshConfigPath, []byte(sshdConfig(ns))},
	} {
		have, err := nd.ReadFile(ctx, f.path)
		if err == nil && string(have) == string(f.data) {
			continue
		}
		if err := nd.WriteFile(ctx, f.path, f.data, 0o644, ""); err != nil {
			return "", err
		}
		changed = true
	}
	// sshd's privilege separation folder; /run is the node's own.
	if _, err := nd.Run(ctx, node.Cmd{Argv: []string{"install", "-d", "-m", "0755", "/run/sshd"}}); err != nil {
		return "", err
	}
	// sshd checks its configuration itself: a bad one fails here, with
	// sshd's own message, rather than as a service that died.
	if _, err := nd.Run(ctx, node.Cmd{Argv: []string{"/usr/sbin/sshd", "-t", "-f", sshConfigPath}}); err != nil {
		return "", err
	}
	sv := nd.Supervisor()
	if changed {
		if err := sv.Stop(ctx, SSHService, 10*time.Second); err != nil {
			return "", err
		}
	}
	if err := sv.Start(ctx, SSHDService); err != nil {
		return "", err
	}
	addr := net.JoinHostPort(ns.Address, "22")
	if err := waitTCP(ctx, addr); err != nil {
		return "", err
	}
	l.opts.Log("%s: sshd on %s (host key %s)", ns.Name, addr, ssh.FingerprintSHA256(hostPub))
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostPub), nil
}

// bootedSSHD checks a booted host's own sshd (the Debian package's, under
// systemd): the lab's client key is authorized for root, and its host key
// (made when the host was cloned) is returned as a known_hosts line.
func (l *Lab) bootedSSHD(ctx context.Context, ns NodeState, client ssh.PublicKey) (string, error) {
	nd, err := l.Node(ns.Name)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	auth := ssh.MarshalAuthorizedKey(client)
	if have, err := nd.ReadFile(ctx, "/root/.ssh/authorized_keys"); err != nil || !strings.Contains(string(have), strings.TrimSpace(string(auth))) {
		if err := nd.WriteFile(ctx, "/root/.ssh/authorized_keys", append(have, auth...), 0o600, ""); err != nil {
			return "", err
		}
	}
	data, err := nd.ReadFile(ctx, "/etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil {
		return "", err
	}
	hostPub, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return "", fmt.Errorf("host key /etc/ssh/ssh_host_ed25519_key.pub: %w", err)
	}
	addr := net.JoinHostPort(ns.Address, "22")
	if err := waitTCP(ctx, addr); err != nil {
		return "", err
	}
	l.opts.Log("%s: sshd (systemd's ssh.service) on %s (host key %s)", ns.Name, addr, ssh.FingerprintSHA256(hostPub))
	return knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostPub), nil
}

// waitTCP waits until something accepts connections at addr.
func waitTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing accepts connections on %s: %w (last: %v)", addr, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// writeFileAtomic writes a host file through a temporary file and a rename.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
