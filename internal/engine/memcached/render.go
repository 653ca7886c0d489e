// Package memcached runs one memcached per controller, unclustered: the
// clients hash keys over every instance, so losing one loses only its share.
package memcached

import (
	"fmt"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// ConfigPath is Debian's memcached option file: one command-line option a line.
const ConfigPath = "/etc/memcached.conf"

// User is the system user Debian's package creates for memcached.
const User = "memcache"

// Renderer renders memcached.conf for controllers.
type Renderer struct{}

// Name implements engine.Renderer.
func (Renderer) Name() string { return "memcached" }

// Files implements engine.Renderer.
func (Renderer) Files(c *spec.Cluster, n spec.Node, _ secrets.Source) ([]engine.File, error) {
	if !n.IsController() {
		return nil, nil
	}
	m := c.Spec.Memcached
	s := engine.Header("#", c, n) + fmt.Sprintf(`
# One memcached per controller, not clustered (source document: Memcached).
# OpenStack's clients spread keys over every instance, so losing one
# instance loses only its share of the keys.

# Listen on the management address only, never on every address.
-l %s
-p %d
# UDP off: no OpenStack client uses it, and memcached's UDP port is abused
# for traffic amplification.
-U 0
# Item memory in MB (Debian's default is 64).
-m %d
# Simultaneous connections (default 1024): every API worker keeps a pool.
-c %d
-u %s
`, n.Address, m.Port, m.MemoryMB, m.MaxConnections, User)
	return []engine.File{engine.Config(ConfigPath, s)}, nil
}
