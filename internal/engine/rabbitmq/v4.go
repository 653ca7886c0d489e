package rabbitmq

import (
	"context"
	"strconv"
	"strings"

	"github.com/hastack/hastack/internal/node"
)

// installedMajor is the major version of the node's rabbitmq-server
// package, 0 when it cannot tell.
func installedMajor(ctx context.Context, nd node.Node) int {
	res, err := nd.Run(ctx, node.Cmd{Argv: []string{"dpkg-query", "-W", "-f", "${Version}", "rabbitmq-server"}})
	if err != nil {
		return 0
	}
	return parseMajor(string(res.Stdout))
}

// parseMajor reads a Debian version (e.g. 4.0.5-6+deb13u2, 1:3.10.8-1) for
// its upstream major number.
func parseMajor(v string) int {
	v = strings.TrimSpace(v)
	if _, after, ok := strings.Cut(v, ":"); ok {
		v = after
	}
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return 0
	}
	return n
}

// formsTogether reports whether blank nodes must start at once to form a
// cluster: RabbitMQ 4's classic-config peer discovery has a blank node
// wait until it reaches the nodes it lists (seen with 4.0.5 on Debian 13:
// the first node alone waited for more than 9 minutes, and booted as soon
// as the others started). RabbitMQ 3.x's first node forms the cluster
// alone.
func formsTogether(blank []*facts) bool {
	if len(blank) < 2 {
		return false
	}
	for _, f := range blank {
		if f.major >= 4 {
			return true
		}
	}
	return false
}
