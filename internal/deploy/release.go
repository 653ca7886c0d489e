package deploy

import (
	"fmt"

	"github.com/hastack/hastack/internal/spec"
)

// SupportedReleases are the Debian releases hastack deploys on, with what
// differs for it.
var SupportedReleases = map[string]string{
	"12": "Debian 12 (bookworm): MariaDB 10.11, RabbitMQ 3.10",
	"13": "Debian 13 (trixie): MariaDB 11.8, RabbitMQ 4.0",
}

// checkRelease accepts a node's /etc/os-release (ID, VERSION_ID) when
// hastack deploys there, and refuses what the spec asks that the release's
// engines cannot do.
func checkRelease(c *spec.Cluster, node, id, version string) error {
	if id != "debian" || SupportedReleases[version] == "" {
		found := id + " " + version
		if id == "" {
			found = "an unknown system (no ID in /etc/os-release)"
		}
		return fmt.Errorf("runs %s; hastack supports Debian 12 and Debian 13", found)
	}
	n, ok := c.Node(node)
	if version == "13" && ok && n.IsController() && c.Spec.RabbitMQ.QueueType == spec.QueueMirrored {
		return fmt.Errorf("runs Debian 13, whose RabbitMQ 4.0 has no classic mirrored queues (removed in RabbitMQ 4.0): spec.rabbitmq.queueType: mirrored cannot be deployed there; use quorum")
	}
	return nil
}
