package cli

import (
	"fmt"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engines"
	"github.com/hastack/hastack/internal/openstack"
)

// serviceUsers are the OpenStack services' database users: every database
// the rendered configs connect to, grouped by the service that owns it.
func serviceUsers() []galera.ServiceUser { return engines.ServiceUsers() }

// extraSecrets are the secrets the rendered service configs use. A
// service's password is not generated when its database exists already
// (made by hand, or the secrets file was lost): a new password would be
// set on its user and lock out the service that runs with the old one.
func extraSecrets() []deploy.Extra {
	var out []deploy.Extra
	for _, u := range serviceUsers() {
		out = append(out, deploy.Extra{
			Name: u.Secret,
			What: fmt.Sprintf("database %s, whose user %s has a password hastack would replace (put it into the secrets file as %s, or drop the database)", u.Databases[0], u.Name, u.Secret),
			Glob: galera.DataDir + "/" + u.Databases[0],
		})
	}
	return append(out, deploy.Extra{Name: openstack.MemcacheSecretKey})
}
