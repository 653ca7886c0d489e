// Package chrony runs time in the source document's hierarchy: controllers
// follow the lower-stratum upstream servers and keep one time among
// themselves if those are lost; every other node follows the controllers.
package chrony

import (
	"fmt"
	"strings"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// ConfigPath is where Debian's chronyd reads its configuration.
const ConfigPath = "/etc/chrony/chrony.conf"

// OrphanStratum is the stratum controllers serve at when every upstream
// server is gone.
const OrphanStratum = 10

// Renderer renders chrony.conf for every node.
type Renderer struct{}

// Name implements engine.Renderer.
func (Renderer) Name() string { return "chrony" }

// Files implements engine.Renderer.
func (Renderer) Files(c *spec.Cluster, n spec.Node, _ secrets.Source) ([]engine.File, error) {
	var b strings.Builder
	b.WriteString(engine.Header("#", c, n))
	if n.IsController() {
		controllerConfig(&b, c, n)
	} else {
		clientConfig(&b, c)
	}
	b.WriteString(`
# Step the clock only during the first 3 updates (boot); afterwards slew it,
# so that databases and token expiry never see time jump.
makestep 1 3
driftfile /var/lib/chrony/chrony.drift
rtcsync
# No UDP command port: chronyc on the node uses the local socket.
cmdport 0
`)
	return []engine.File{engine.Config(ConfigPath, b.String())}, nil
}

func controllerConfig(b *strings.Builder, c *spec.Cluster, n spec.Node) {
	b.WriteString("\n# Controllers follow the more accurate, lower-stratum upstream servers\n")
	b.WriteString("# (source document: NTP). iburst: 4 quick first polls, synchronised in seconds.\n")
	b.WriteString("# maxpoll 6: polled every 64 s at most (default up to 1024 s), so a chronyd that\n")
	b.WriteString("# dropped its samples (a frozen or suspended host, a time jump) has new ones\n")
	b.WriteString("# within a minute.\n")
	b.WriteString("# trust: the other controllers below must never outvote the upstream servers.\n")
	b.WriteString("# Without it, two controllers that agree with each other mark a lone upstream\n")
	b.WriteString("# server a falseticker whenever its offset strays outside their error bounds\n")
	b.WriteString("# (a loaded host, an asymmetric path, a return after an outage), and then the\n")
	b.WriteString("# controllers follow each other in a ring, stratum climbing, detached from\n")
	b.WriteString("# true time. Trusted servers can be voted out only by each other.\n")
	for _, u := range c.Spec.NTP.Upstream {
		fmt.Fprintf(b, "server %s iburst maxpoll 6 trust\n", u)
	}
	others := 0
	for _, o := range c.Controllers() {
		if o.Name == n.Name {
			continue
		}
		if others == 0 {
			b.WriteString("\n# The other controllers: if every upstream server is lost they still agree\n")
			b.WriteString("# on one time (orphan mode below) instead of drifting apart. On the\n")
			b.WriteString("# management network polls are cheap: every 4-16 s (default 64-1024 s). A\n")
			b.WriteString("# thawed controller's chronyd takes the freeze for a time jump and drops its\n")
			b.WriteString("# samples; it needs a few new ones to select a source again: seconds, not\n")
			b.WriteString("# minutes.\n")
		}
		fmt.Fprintf(b, "server %s iburst minpoll 2 maxpoll 4\n", o.Address)
		others++
	}
	mgmt, _ := c.Network(spec.ManagementNetwork)
	fmt.Fprintf(b, `
# Orphan mode: without upstream, the controllers serve time at stratum %d and
# one of them becomes the common reference, so every node keeps agreeing.
local stratum %d orphan

# Serve time to the other nodes, on the management network only.
allow %s
bindaddress %s
`, OrphanStratum, OrphanStratum, mgmt.CIDR, n.Address)
}

func clientConfig(b *strings.Builder, c *spec.Cluster) {
	b.WriteString("\n# Every node other than a controller follows the controllers (source document:\n")
	b.WriteString("# NTP), by address so that time does not depend on name resolution at boot.\n")
	b.WriteString("# Polled every 16-64 s (default 64-1024 s): after a freeze or a time jump\n")
	b.WriteString("# drops the samples, a source is selected again within a few minutes at most.\n")
	for _, o := range c.Controllers() {
		fmt.Fprintf(b, "server %s iburst minpoll 4 maxpoll 6\n", o.Address)
	}
}
