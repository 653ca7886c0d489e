// Package engine holds what every engine package shares: the file a node
// needs and the interface through which the render step asks each engine
// for its files. One sub-package per engine (chrony, memcached, galera,
// rabbitmq, endpoint) renders its configuration from the spec and, in the
// deploy, brings it up, probes it and recovers it. Engine packages never
// know whether a node is a lab node or a real host.
package engine

import (
	"fmt"
	"io/fs"

	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// File is one file a node needs, at its absolute path on that node.
type File struct {
	Path    string
	Mode    fs.FileMode
	Owner   string // user that must own it on the node; "" is root
	Content []byte
	// Secret marks a file that holds a secret: mode 0600, never shown.
	Secret bool
}

// Renderer produces an engine's files for one node. It returns no files
// for a node the engine does not run on.
type Renderer interface {
	Name() string
	Files(c *spec.Cluster, n spec.Node, s secrets.Source) ([]File, error)
}

// Header is the first comment of every rendered file.
func Header(comment string, c *spec.Cluster, n spec.Node) string {
	return fmt.Sprintf("%s Rendered by hastack for %s (%s) of cluster %s.\n%s Do not edit: 'hastack up' rewrites it; change the spec instead.\n",
		comment, n.Name, n.Role, c.Metadata.Name, comment)
}

// Config is a plain configuration file, readable by all.
func Config(path string, content string) File {
	return File{Path: path, Mode: 0o644, Content: []byte(content)}
}

// SecretFile is a file holding a secret: mode 0600, owned by owner.
func SecretFile(path, owner string, content []byte) File {
	return File{Path: path, Mode: 0o600, Owner: owner, Content: content, Secret: true}
}
