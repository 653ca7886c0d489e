package check

import (
	"context"
	"net"
	"strconv"
	"strings"

	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/secrets"
)

// judgeServiceDatabases reads, through the database endpoint as hastack's
// own user, each OpenStack service's databases and user: a missing one,
// or a password that differs from the secrets file, fails (the service's
// rendered connection would not work); grants hastack did not give warn.
// An endpoint that does not answer (not deployed yet) warns.
func judgeServiceDatabases(ctx context.Context, t Target, o Options) []Result {
	if len(t.ServiceUsers) == 0 {
		return nil
	}
	c := t.Cluster
	e := c.Spec.Database.Endpoint
	addr := net.JoinHostPort(e.VIP, strconv.Itoa(e.Port))
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	q, closeDB, err := galera.TCPQuery(galera.ProbeOptions{Address: addr, User: galera.AdminUser, Password: t.Secrets.Get(secrets.DatabaseAdminPassword)})
	var states []galera.ServiceDBState
	if err == nil {
		defer closeDB()
		states, err = galera.InspectServiceDBs(ctx, q, galera.AdminHost(c), t.ServiceUsers, t.Secrets)
	}
	if err != nil {
		return []Result{{Node: ClusterNode, Check: "service databases", Status: Warn,
			Value: "cannot read them through " + addr + " (not deployed yet?): " + firstLine(err.Error()),
			Limit: "each service's databases and user as its rendered config needs"}}
	}
	var out []Result
	for _, s := range states {
		r := Result{Node: ClusterNode, Check: "service database " + s.User, Status: OK, Value: "databases, user and grants in place",
			Limit: "as the rendered config needs"}
		if m := s.Missing(); m != "" {
			r.Status, r.Value = Fail, m+" (hastack up makes it so)"
		} else if len(s.Other) > 0 {
			r.Status, r.Value = Warn, "in place; also: "+strings.Join(s.Other, "; ")
		}
		out = append(out, r)
	}
	return out
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
