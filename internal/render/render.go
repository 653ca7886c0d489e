// Package render turns a validated spec into every file each node needs,
// asking each engine in turn, and lays them out as each node's filesystem.
package render

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/engines"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// Engines lists every engine's renderer in deploy order (package engines
// holds the list).
func Engines() []engine.Renderer { return engines.Renderers() }

// NodeFiles is every file of one node, by engine, in engine order.
type NodeFiles struct {
	Node  spec.Node
	Files map[string][]engine.File // engine name -> files
}

// All returns the files of every node, ordered by path.
func (nf NodeFiles) All() []engine.File {
	var out []engine.File
	for _, fs := range nf.Files {
		out = append(out, fs...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Node renders every engine's files for one node.
func Node(c *spec.Cluster, n spec.Node, s secrets.Source) (NodeFiles, error) {
	nf := NodeFiles{Node: n, Files: map[string][]engine.File{}}
	var errs []error
	for _, e := range Engines() {
		files, err := e.Files(c, n, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %w", n.Name, e.Name(), err))
			continue
		}
		if len(files) > 0 {
			nf.Files[e.Name()] = files
		}
	}
	return nf, errors.Join(errs...)
}

// Cluster renders every node, in spec order. The spec must be valid.
func Cluster(c *spec.Cluster, s secrets.Source) ([]NodeFiles, error) {
	var out []NodeFiles
	var errs []error
	for _, n := range c.Spec.Nodes {
		nf, err := Node(c, n, s)
		errs = append(errs, err)
		out = append(out, nf)
	}
	return out, errors.Join(errs...)
}

// WriteTree lays the files out under dir as DIR/<node>/<path>, with each
// file's mode. Everything is rendered before this is called, so a bad spec
// writes nothing.
func WriteTree(dir string, nodes []NodeFiles) error {
	for _, nf := range nodes {
		for _, f := range nf.All() {
			p := filepath.Join(dir, nf.Node.Name, filepath.FromSlash(f.Path))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			if err := secrets.WriteFileAtomic(p, f.Content, f.Mode); err != nil {
				return fmt.Errorf("write %s: %w", p, err)
			}
		}
	}
	return nil
}
