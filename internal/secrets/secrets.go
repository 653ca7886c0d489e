// Package secrets generates and keeps the cluster's secrets (database and
// RabbitMQ passwords, the Erlang cookie) in a file of their own, mode 0600,
// beside the spec. A secret is generated the first time something needs it
// and never printed or logged.
package secrets

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Names of the secrets hastack uses.
const (
	ErlangCookie          = "rabbitmq/erlang-cookie"
	RabbitAdminPassword   = "rabbitmq/hastack"   // hastack's own administrator on the bus
	RabbitServicePassword = "rabbitmq/openstack" // the user OpenStack services connect as
	DatabaseAdminPassword = "database/hastack"   // hastack's own administrator and health probes
)

// Source hands out secrets by name, generating them on first need.
type Source interface {
	Get(name string) string
}

// Store is a secrets file. It is not safe for concurrent use.
type Store struct {
	path    string
	cluster string
	values  map[string]string
	dirty   bool
	rand    io.Reader
}

type fileFormat struct {
	Cluster string            `yaml:"cluster"`
	Secrets map[string]string `yaml:"secrets"`
}

// PathFor returns the secrets file that belongs to a spec file:
// hastack.yaml -> hastack.secrets.yaml in the same folder.
func PathFor(specPath string) string {
	ext := filepath.Ext(specPath)
	return strings.TrimSuffix(specPath, ext) + ".secrets.yaml"
}

// Open loads the secrets file of a cluster, or starts an empty one when the
// file does not exist yet (nothing is written until Save). A file readable by
// anyone but its owner, or belonging to another cluster, is refused.
func Open(path, cluster string) (*Store, error) {
	s := &Store{path: path, cluster: cluster, values: map[string]string{}, rand: rand.Reader}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("secrets file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("secrets file %s has mode %04o: it must be readable by its owner only (run: chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secrets file: %w", err)
	}
	var f fileFormat
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("secrets file %s is not valid: %w", path, err)
	}
	if f.Cluster != cluster {
		return nil, fmt.Errorf("secrets file %s belongs to cluster %q, not %q: name another spec or move the file away", path, f.Cluster, cluster)
	}
	for k, v := range f.Secrets {
		s.values[k] = v
	}
	return s, nil
}

// Path is where the store is kept.
func (s *Store) Path() string { return s.path }

// Get returns the named secret, generating it on first need.
func (s *Store) Get(name string) string {
	if v, ok := s.values[name]; ok {
		return v
	}
	v := s.generate(32)
	s.values[name] = v
	s.dirty = true
	return v
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func (s *Store) generate(n int) string {
	buf := make([]byte, n)
	out := make([]byte, n)
	// Rejection sampling keeps every character equally likely.
	for i := 0; i < n; {
		if _, err := io.ReadFull(s.rand, buf); err != nil {
			panic("secrets: no randomness: " + err.Error())
		}
		for _, b := range buf {
			if int(b) < 256-256%len(alphabet) && i < n {
				out[i] = alphabet[int(b)%len(alphabet)]
				i++
			}
		}
	}
	return string(out)
}

// Save writes the file (mode 0600, atomically) when a secret was generated.
func (s *Store) Save() error {
	if !s.dirty {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("# hastack secrets: generated, never printed. Keep this file mode 0600 and out of version control.\n")
	keys := make([]string, 0, len(s.values))
	for k := range s.values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	f := yaml.Node{Kind: yaml.MappingNode}
	for _, k := range keys {
		f.Content = append(f.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &yaml.Node{Kind: yaml.ScalarNode, Value: s.values[k]})
	}
	doc := map[string]any{"cluster": s.cluster, "secrets": &f}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	if err := WriteFileAtomic(s.path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write secrets: %w", err)
	}
	s.dirty = false
	return nil
}

// WriteFileAtomic writes data to path through a temporary file in the same
// folder, so that a reader never sees half a file and a secret file never
// exists with a wider mode than asked for.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Fixed is a Source for tests and dry runs: it returns a recognisable,
// non-secret placeholder for every name.
type Fixed map[string]string

// Get returns the fixed value, or a placeholder naming the secret.
func (f Fixed) Get(name string) string {
	if v, ok := f[name]; ok {
		return v
	}
	return "SECRET(" + name + ")"
}

// Has reports whether the named secret exists already.
func (s *Store) Has(name string) bool {
	_, ok := s.values[name]
	return ok
}

// Names lists every secret hastack deploys.
func Names() []string {
	return []string{ErlangCookie, RabbitAdminPassword, RabbitServicePassword, DatabaseAdminPassword}
}
