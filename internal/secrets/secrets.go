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
	"sync"

	"gopkg.in/yaml.v3"
)

// Names of the secrets hastack uses.
const (
	ErlangCookie          = "rabbitmq/erlang-cookie"
	RabbitAdminPassword   = "rabbitmq/hastack"   // hastack's own administrator on the bus
	RabbitServicePassword = "rabbitmq/openstack" // the user OpenStack services connect as
	DatabaseAdminPassword = "database/hastack"   // hastack's own administrator and health probes
)

// Source hands out secrets by name. Work that fans out over hosts reads a
// Values (resolved once, read-only); only the secrets phase of 'up' and
// 'render' generate, through a Store.
type Source interface {
	Get(name string) string
}

// Values is a read-only set of secrets, resolved once before work fans
// out over hosts, and safe for concurrent use. A missing secret reads as
// "" and is never generated: a probe then fails to authenticate, which is
// the truth when the secrets file lacks it.
type Values struct{ m map[string]string }

// Get returns the named secret, "" when the set does not hold it.
func (v Values) Get(name string) string { return v.m[name] }

// Has reports whether the set holds the named secret.
func (v Values) Has(name string) bool {
	_, ok := v.m[name]
	return ok
}

// With returns a copy of v with the given secrets added.
func (v Values) With(add map[string]string) Values {
	m := make(map[string]string, len(v.m)+len(add))
	for k, x := range v.m {
		m[k] = x
	}
	for k, x := range add {
		m[k] = x
	}
	return Values{m: m}
}

// Store is a secrets file. Its methods are safe for concurrent use, but
// work that fans out reads a Values snapshot instead (Store.Values), so
// that nothing is generated behind the operator's back.
type Store struct {
	mu      sync.Mutex
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
		if err := checkValue(v); err != nil {
			return nil, fmt.Errorf("secrets file %s: secret %s %v: fix or remove it (a removed secret is generated again, which a deployed cluster refuses)", path, k, err)
		}
		s.values[k] = v
	}
	return s, nil
}

// Path is where the store is kept.
func (s *Store) Path() string { return s.path }

// Values is a read-only snapshot of the secrets the store holds now.
func (s *Store) Values() Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Values{}.With(s.values)
}

// Generate returns a new random value for each name, without storing it.
func (s *Store) Generate(names ...string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(names))
	for _, n := range names {
		out[n] = s.generate(32)
	}
	return out
}

// Set stores the given values (written by Save).
func (s *Store) Set(values map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range values {
		s.values[k] = v
		s.dirty = true
	}
}

// Get returns the named secret, generating it on first need.
func (s *Store) Get(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
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
	s.mu.Lock()
	defer s.mu.Unlock()
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
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.values[name]
	return ok
}

// Names lists every secret hastack deploys.
func Names() []string {
	return []string{ErlangCookie, RabbitAdminPassword, RabbitServicePassword, DatabaseAdminPassword}
}

// checkValue refuses a secret that would not survive the places it goes
// (SQL literals are escaped, but a configuration line or a URL cannot hold
// every byte): it must be non-empty, printable ASCII, without quotes or
// backslashes.
func checkValue(v string) error {
	if v == "" {
		return errors.New("is empty")
	}
	for i, r := range v {
		if r < 0x21 || r > 0x7e || r == '\'' || r == '"' || r == '\\' {
			return fmt.Errorf("has a character hastack cannot pass on safely at position %d (use printable ASCII without quotes, backslashes or spaces)", i+1)
		}
	}
	return nil
}

// NewValues is a read-only set of the given secrets (tests, dry runs).
func NewValues(m map[string]string) Values { return Values{}.With(m) }
