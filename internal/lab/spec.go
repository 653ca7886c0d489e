package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hastack/hastack/internal/spec"
)

// DefaultShape is the lab made when no spec is given: 3 controllers and 1
// compute, the source document's smallest HA control plane.
var DefaultShape = spec.ExampleOptions{Name: "lab", Controllers: 3, Computes: 1, Lab: true}

// DefaultSpec is the text of the default lab's spec, validated: nothing is
// written for a spec that cannot be used.
func DefaultSpec() ([]byte, error) {
	data, err := spec.ExampleYAML(DefaultShape)
	if err != nil {
		return nil, err
	}
	if c, ps := spec.Parse(data); ps.Err() != nil || c == nil {
		return nil, fmt.Errorf("default lab spec: %v", ps.Err())
	}
	return data, nil
}

// KnownHostsFor is the known_hosts file the lab writes beside a spec:
// hastack.yaml -> hastack.known_hosts.
func KnownHostsFor(specPath string) string {
	return strings.TrimSuffix(specPath, filepath.Ext(specPath)) + ".known_hosts"
}

// PointSpecAtSSH makes the lab's nodes reachable over SSH and writes the
// spec's ssh block that reaches them: the lab's client key, root, and the
// nodes' host keys in <spec>.known_hosts beside the spec. The spec is
// rewritten only when the block changes, atomically, and only when the
// result still validates. It says what it did.
func (l *Lab) PointSpecAtSSH(ctx context.Context, specPath string) (string, error) {
	known := KnownHostsFor(specPath)
	acc, err := l.EnableSSH(ctx, known)
	if err != nil {
		return "", fmt.Errorf("%w\nthe lab is up, but not every node runs sshd; run 'hastack lab up --ssh' again once the cause is fixed", err)
	}
	data, err := os.ReadFile(specPath)
	if err != nil {
		return "", err
	}
	block := spec.SSH{User: acc.User, IdentityFile: acc.IdentityFile, KnownHosts: filepath.Base(known)}
	if c, ps := spec.Parse(data); ps.Err() == nil && c.Spec.SSH != nil && *c.Spec.SSH == block {
		return fmt.Sprintf("%s already reaches the nodes over SSH", specPath), nil
	}
	out, err := spec.SetClusterSSH(data, block)
	if err != nil {
		return "", fmt.Errorf("adding spec.ssh to %s: %w", specPath, err)
	}
	if c, ps := spec.Parse(out); ps.Err() != nil || c == nil {
		return "", fmt.Errorf("adding spec.ssh to %s made it invalid (nothing written): %v", specPath, ps.Err())
	}
	fi, err := os.Stat(specPath)
	if err != nil {
		return "", err
	}
	tmp := specPath + ".tmp"
	if err := os.WriteFile(tmp, out, fi.Mode().Perm()); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, specPath); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: spec.ssh added: up, status and check now reach every node over SSH (as root, key %s, host keys in %s)", specPath, acc.IdentityFile, known), nil
}

// EnsureSpec writes the default lab's spec to path when no file is there,
// and says whether it wrote one.
func EnsureSpec(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil || !os.IsNotExist(err) {
		return false, err
	}
	data, err := DefaultSpec()
	if err != nil {
		return false, err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return false, err
	}
	return true, nil
}
