package cli

import (
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engines"
)

// serviceUsers are the OpenStack services' database users: every database
// the rendered configs connect to, grouped by the service that owns it.
func serviceUsers() []galera.ServiceUser { return engines.ServiceUsers() }
