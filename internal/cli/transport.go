package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/sshnode"
)

// reach connects hastack to the cluster's nodes, each by the transport the
// spec gives it: a node with an ssh block (its own, or spec.ssh) over SSH,
// any other node as a lab node of the lab on this machine. Engines and
// phases see node.Node either way. opts sets the SSH pool (zero values:
// the defaults); lo places the lab (zero values: the environment or the
// defaults).
func reach(c *spec.Cluster, specPath string, lo lab.Options, opts sshnode.Options) (*plan.Target, *secrets.Store, error) {
	var labNodes, sshNodes []spec.Node
	for _, n := range c.Spec.Nodes {
		if _, ok := c.NodeSSH(n); ok {
			sshNodes = append(sshNodes, n)
		} else {
			labNodes = append(labNodes, n)
		}
	}
	if len(sshNodes) == 0 {
		l, err := lab.Open(lo)
		if err != nil {
			if errors.Is(err, lab.ErrNoLab) {
				return nil, nil, fmt.Errorf("cluster %q: no lab is up for it, and its nodes have no ssh block: run 'hastack lab up -f %s' first, or give the nodes an ssh block to reach real hosts", c.Metadata.Name, specPath)
			}
			return nil, nil, err
		}
		return labTarget(c, specPath, l)
	}
	nodes := map[string]node.Node{}
	if len(labNodes) > 0 {
		l, err := lab.Open(lo)
		if err != nil {
			return nil, nil, fmt.Errorf("nodes %s have no ssh block, so they are lab nodes, but: %w", strings.Join(plan.Names(labNodes), ", "), err)
		}
		if got := l.State().Cluster; got != c.Metadata.Name {
			return nil, nil, fmt.Errorf("the lab on this machine is for cluster %q, not %q (from %s)", got, c.Metadata.Name, specPath)
		}
		for _, n := range labNodes {
			nd, err := l.Node(n.Name)
			if err != nil {
				return nil, nil, fmt.Errorf("spec node %s (no ssh block, so a lab node): %w", n.Name, err)
			}
			nodes[n.Name] = nd
		}
	}
	opts.SupervisorSocket = lab.SupervisorSocket
	pool := sshnode.NewPool(opts)
	var remote []*sshnode.Node
	for _, n := range sshNodes {
		cfg, err := sshConfig(c, n, specPath)
		if err != nil {
			return nil, nil, err
		}
		nd, err := pool.Node(cfg)
		if err != nil {
			return nil, nil, err
		}
		nodes[n.Name] = nd
		remote = append(remote, nd)
	}
	store, err := secrets.Open(secrets.PathFor(specPath), c.Metadata.Name)
	if err != nil {
		return nil, nil, err
	}
	shared := len(labNodes) > 0 || sharesThisKernel(remote)
	return &plan.Target{Cluster: c, Nodes: nodes, Secrets: store.Values(), SharedClock: shared, SpecPath: absPath(specPath)}, store, nil
}

// sshConfig is how to reach node n, with its files found as the spec
// means them: ~ is the home folder, a relative path is relative to the
// spec's folder (so a spec and its key and known_hosts travel together).
func sshConfig(c *spec.Cluster, n spec.Node, specPath string) (sshnode.Config, error) {
	s, _ := c.NodeSSH(n)
	home, _ := os.UserHomeDir()
	// Absolute, so that messages name the file wherever hastack ran.
	if abs, err := filepath.Abs(specPath); err == nil {
		specPath = abs
	}
	resolve := func(p string) string {
		switch {
		case p == "":
			return ""
		case p == "~" || strings.HasPrefix(p, "~/"):
			return filepath.Join(home, strings.TrimPrefix(p, "~"))
		case filepath.IsAbs(p):
			return p
		}
		return filepath.Join(filepath.Dir(specPath), p)
	}
	return sshnode.Config{
		Name:              n.Name,
		Address:           n.Address,
		Host:              s.Host,
		Port:              s.Port,
		User:              s.User,
		IdentityFile:      resolve(s.IdentityFile),
		Agent:             s.UseAgent(),
		KnownHosts:        resolve(s.KnownHosts),
		AcceptNewHostKeys: s.AcceptsNewHostKeys(),
	}, nil
}

// sharesThisKernel reports whether the hosts run on this machine's kernel
// (lab nodes reached over SSH): then they share its clock, and chronyd
// there must not steer it. The kernel's boot id tells; the first host that
// answers decides, so one unreachable host does not hold everything up.
// When none answers, the hosts are taken for machines of their own: the
// deploy stops at its connect phase anyway.
func sharesThisKernel(nodes []*sshnode.Node) bool {
	const bootID = "/proc/sys/kernel/random/boot_id"
	mine, err := os.ReadFile(bootID)
	if err != nil || len(nodes) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	answers := make(chan []byte, len(nodes))
	for _, n := range nodes {
		go func() {
			theirs, err := n.ReadFile(ctx, bootID)
			if err != nil {
				theirs = nil
			}
			answers <- theirs
		}()
	}
	for range nodes {
		if a := <-answers; a != nil {
			return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(mine))
		}
	}
	return false
}

// absPath is p made absolute, so that files beside the spec are found
// whatever the working folder; p itself when that fails.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
