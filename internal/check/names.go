package check

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/spec"
)

// Names: RabbitMQ's node names (rabbit@ctl1) are resolved by every member,
// and a member that resolves a peer's name to another address (a stale
// /etc/hosts line, Debian's 127.0.1.1 line for the node's own name) cannot
// cluster with it. So every node name must resolve, on every node, to that
// node's management address and to nothing else.

// resolution is what one name resolved to on one node.
type resolution struct {
	Addrs []string // distinct, in the resolver's order
	Found bool
}

// resolveScript resolves each NAME=ADDRESS argument with getent ahosts
// (getaddrinfo, as the engines resolve: /etc/hosts, then DNS, per
// nsswitch.conf) and prints only the names that do not resolve to ADDRESS
// alone, each with the distinct addresses it got (none: it does not
// resolve), then how many it checked. Comparing on the node keeps what
// comes back, and what hastack parses, small however many nodes there
// are: the N lookups per node are the check's work and run on the nodes,
// in parallel.
const resolveScript = `for p do
  n=${p%%=*} want=${p#*=}
  got=$(getent ahosts "$n" | awk '!seen[$1]++ { printf "%s ", $1 }')
  [ "$got" = "$want " ] || printf 'mismatch %s %s\n' "$n" "$got"
done
printf 'checked %d\n' $#`

func (g *gatherer) resolve(ctx context.Context, nd node.Node, nodes []spec.Node) (map[string]resolution, error) {
	argv := []string{"sh", "-c", resolveScript, "sh"}
	for _, n := range nodes {
		argv = append(argv, n.Name+"="+n.Address)
	}
	res, err := nd.Run(ctx, node.Cmd{Argv: argv})
	if err != nil {
		return nil, err
	}
	return parseResolve(string(res.Stdout), nodes)
}

// parseResolve reads resolveScript's output: every name resolves as the
// spec says but those it lists.
func parseResolve(out string, nodes []spec.Node) (map[string]resolution, error) {
	m := make(map[string]resolution, len(nodes))
	for _, n := range nodes {
		m[n.Name] = resolution{Addrs: []string{n.Address}, Found: true}
	}
	checked := -1
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "mismatch":
			m[f[1]] = resolution{Addrs: f[2:], Found: len(f) > 2}
		case len(f) == 2 && f[0] == "checked":
			checked, _ = strconv.Atoi(f[1])
		}
	}
	if checked != len(nodes) {
		return nil, fmt.Errorf("name resolution script checked %d of %d names: %q", checked, len(nodes), truncate(strings.TrimSpace(out), 200))
	}
	return m, nil
}

// judgeNames checks every spec node's name as this node resolves it.
func judgeNames(c *spec.Cluster, nf *nodeFacts) Result {
	r := Result{Node: nf.Spec.Name, Check: "names", Limit: "every node name resolves to its management address only"}
	if nf.Names.Err != nil {
		r.Status, r.Value = Fail, "not measured: "+errText(nf.Names.Err)
		return r
	}
	var bad []string
	for _, n := range c.Spec.Nodes {
		res, ok := nf.Names.V[n.Name]
		switch {
		case !ok || !res.Found:
			bad = append(bad, n.Name+" does not resolve")
		case len(res.Addrs) != 1 || res.Addrs[0] != n.Address:
			bad = append(bad, fmt.Sprintf("%s -> %s (want %s only)", n.Name, strings.Join(res.Addrs, ", "), n.Address))
		}
	}
	if len(bad) > 0 {
		r.Status, r.Value = Fail, strings.Join(bad, "; ")
		return r
	}
	r.Status, r.Value = OK, fmt.Sprintf("all %d names resolve to their management address only", len(c.Spec.Nodes))
	return r
}
