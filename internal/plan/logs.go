package plan

import (
	"context"
	"strings"

	"github.com/hastack/hastack/internal/node"
)

// ServiceLogger is a node that knows where a service's log is: on a host
// with systemd that is the unit's journal, not a file of hastack's.
type ServiceLogger interface {
	// ServiceLog says where the service's log is (e.g. "journalctl -u
	// mariadb.service") and returns its last lines.
	ServiceLog(ctx context.Context, service string, lines int) (where, tail string)
}

// ServiceLog says where a service's log is on n and returns its last
// lines, indented for an error message. Nodes that keep services with
// hastack's supervisor log to /var/log/hastack/<service>.log.
func ServiceLog(ctx context.Context, n node.Node, service string, lines int) (where, tail string) {
	if l, ok := n.(ServiceLogger); ok {
		return l.ServiceLog(ctx, service, lines)
	}
	path := "/var/log/hastack/" + service + ".log"
	data, err := n.ReadFile(ctx, path)
	if err != nil {
		return path, "  (" + err.Error() + ")"
	}
	return path, indentTail(string(data), lines)
}

func indentTail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return "  " + strings.Join(all, "\n  ")
}
