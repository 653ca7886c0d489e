package cli

import (
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/openstack"
)

// serviceUsers are the OpenStack services' database users: every database
// the rendered configs connect to, grouped by the service that owns it.
func serviceUsers() []galera.ServiceUser {
	var out []galera.ServiceUser
	idx := map[string]int{}
	for _, d := range openstack.Databases() {
		i, ok := idx[d.Service]
		if !ok {
			i = len(out)
			idx[d.Service] = i
			out = append(out, galera.ServiceUser{Name: d.Service, Secret: openstack.DatabasePasswordSecret(d.Service)})
		}
		out[i].Databases = append(out[i].Databases, d.Name)
	}
	return out
}
