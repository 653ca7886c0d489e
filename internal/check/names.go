package check

import (
	"context"
	"fmt"
	"slices"
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

// resolveScript resolves each argument with getent ahosts (getaddrinfo, as
// the engines resolve: /etc/hosts, then DNS, per nsswitch.conf), marking
// where each name's answer starts and how getent exited. One command per
// node, whatever the number of names: the transport's cost stays linear.
const resolveScript = `for n do printf '== %s\n' "$n"; getent ahosts "$n"; printf 'rc %s\n' "$?"; done`

func (g *gatherer) resolve(ctx context.Context, nd node.Node, nodes []spec.Node) (map[string]resolution, error) {
	argv := []string{"sh", "-c", resolveScript, "sh"}
	for _, n := range nodes {
		argv = append(argv, n.Name)
	}
	res, err := nd.Run(ctx, node.Cmd{Argv: argv})
	if err != nil {
		return nil, err
	}
	return parseResolve(string(res.Stdout)), nil
}

// parseResolve reads resolveScript's output.
func parseResolve(out string) map[string]resolution {
	m := map[string]resolution{}
	name := ""
	var cur resolution
	flush := func() {
		if name != "" {
			m[name] = cur
		}
	}
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "== "):
			flush()
			name, cur = strings.TrimPrefix(line, "== "), resolution{}
		case strings.HasPrefix(line, "rc "):
			rc, _ := strconv.Atoi(strings.TrimPrefix(line, "rc "))
			cur.Found = rc == 0 && len(cur.Addrs) > 0
		default:
			f := strings.Fields(line)
			if len(f) > 0 && !slices.Contains(cur.Addrs, f[0]) {
				cur.Addrs = append(cur.Addrs, f[0])
			}
		}
	}
	flush()
	return m
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
