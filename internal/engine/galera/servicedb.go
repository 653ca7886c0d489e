package galera

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// ServiceUser is an OpenStack service's database user and the databases
// its rendered configuration connects to. The user is granted those
// databases only, from the management network only (AdminHost).
type ServiceUser struct {
	Name      string   // the user, e.g. nova
	Secret    string   // the secret holding its password, e.g. database/nova
	Databases []string // e.g. nova, nova_api, nova_cell0
}

// ServiceDBState is what the cluster holds of one service user.
type ServiceDBState struct {
	User string `json:"user"`
	// Exists: User@<management network> exists.
	Exists bool `json:"exists"`
	// PasswordOK: its password is the one in the secrets file.
	PasswordOK bool `json:"passwordOK"`
	// MissingDatabases do not exist; MissingGrants exist but the user is
	// not granted all privileges on them.
	MissingDatabases []string `json:"missingDatabases,omitempty"`
	MissingGrants    []string `json:"missingGrants,omitempty"`
	// Other are grants and accounts beyond what hastack gives (the user
	// from another host, global privileges, other databases): reported,
	// never dropped.
	Other []string `json:"other,omitempty"`
	// NoSecret: the secrets file has no password for the user yet.
	NoSecret bool `json:"noSecret,omitempty"`
}

// Missing says what 'up' still has to do for the user, "" when nothing.
func (s ServiceDBState) Missing() string {
	var parts []string
	switch {
	case s.NoSecret:
		parts = append(parts, "no password in the secrets file")
	case !s.Exists:
		parts = append(parts, "user missing")
	case !s.PasswordOK:
		parts = append(parts, "password differs from the secrets file")
	}
	if len(s.MissingDatabases) > 0 {
		parts = append(parts, "database(s) missing: "+strings.Join(s.MissingDatabases, ", "))
	}
	if len(s.MissingGrants) > 0 {
		parts = append(parts, "not granted: "+strings.Join(s.MissingGrants, ", "))
	}
	return strings.Join(parts, "; ")
}

// QueryFunc runs one SELECT and returns its rows, columns as strings
// (NULL as "").
type QueryFunc func(ctx context.Context, query string) ([][]string, error)

// InspectServiceDBs reads what the cluster holds of each service user at
// host (the management network's pattern). It only reads; passwords are
// compared on the server (PASSWORD()), never read back.
func InspectServiceDBs(ctx context.Context, q QueryFunc, host string, users []ServiceUser, sec secrets.Values) ([]ServiceDBState, error) {
	if len(users) == 0 {
		return nil, nil
	}
	var names, dbs []string
	for _, u := range users {
		names = append(names, Quote(u.Name))
		for _, d := range u.Databases {
			dbs = append(dbs, Quote(d))
		}
	}
	inNames := "(" + strings.Join(names, ",") + ")"
	rows, err := q(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ("+strings.Join(dbs, ",")+")")
	if err != nil {
		return nil, fmt.Errorf("reading databases: %w", err)
	}
	haveDB := map[string]bool{}
	for _, r := range rows {
		haveDB[r[0]] = true
	}
	// Accounts: every host of each user, its global privileges (the
	// access bitmask) and whether its password matches.
	var accounts []string
	for _, u := range users {
		pw := "NULL"
		if sec.Has(u.Secret) {
			pw = "PASSWORD(" + Quote(sec.Get(u.Secret)) + ")"
		}
		accounts = append(accounts, fmt.Sprintf("SELECT User, Host, IFNULL(JSON_VALUE(Priv, '$.access'), 0), IFNULL(JSON_VALUE(Priv, '$.authentication_string') = %s, 0) FROM mysql.global_priv WHERE User = %s", pw, Quote(u.Name)))
	}
	accRows, err := q(ctx, strings.Join(accounts, " UNION ALL "))
	if err != nil {
		return nil, fmt.Errorf("reading database users: %w", err)
	}
	grantRows, err := q(ctx, "SELECT User, Host, Db, Select_priv = 'Y' AND Insert_priv = 'Y' AND Update_priv = 'Y' AND Delete_priv = 'Y' AND Create_priv = 'Y' AND Drop_priv = 'Y' AND Alter_priv = 'Y' AND Index_priv = 'Y' AND References_priv = 'Y' FROM mysql.db WHERE User IN "+inNames)
	if err != nil {
		return nil, fmt.Errorf("reading database grants: %w", err)
	}
	tableRows, err := q(ctx, "SELECT User, Host, Db, Table_name FROM mysql.tables_priv WHERE User IN "+inNames)
	if err != nil {
		return nil, fmt.Errorf("reading table grants: %w", err)
	}
	out := make([]ServiceDBState, len(users))
	for i, u := range users {
		s := ServiceDBState{User: u.Name, NoSecret: !sec.Has(u.Secret)}
		for _, r := range accRows {
			if r[0] != u.Name {
				continue
			}
			if r[1] == host {
				s.Exists = true
				s.PasswordOK = r[3] == "1"
				if r[2] != "0" && r[2] != "" {
					s.Other = append(s.Other, fmt.Sprintf("%s@'%s' has global privileges (access %s)", u.Name, host, r[2]))
				}
				continue
			}
			s.Other = append(s.Other, fmt.Sprintf("%s@'%s' exists too (another host)", u.Name, r[1]))
		}
		full := map[string]bool{}
		for _, r := range grantRows {
			if r[0] != u.Name {
				continue
			}
			if r[1] == host && slices.Contains(u.Databases, r[2]) {
				full[r[2]] = r[3] == "1"
				continue
			}
			s.Other = append(s.Other, fmt.Sprintf("%s@'%s' is granted database %s", u.Name, r[1], r[2]))
		}
		for _, r := range tableRows {
			if r[0] == u.Name {
				s.Other = append(s.Other, fmt.Sprintf("%s@'%s' is granted table %s.%s", u.Name, r[1], r[2], r[3]))
			}
		}
		for _, d := range u.Databases {
			if !haveDB[d] {
				s.MissingDatabases = append(s.MissingDatabases, d)
			}
			if !full[d] {
				s.MissingGrants = append(s.MissingGrants, d)
			}
		}
		sort.Strings(s.Other)
		out[i] = s
	}
	return out, nil
}

// QuoteIdent is s as a MariaDB identifier (backticks doubled).
func QuoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// serviceDBStatements are what brings one user to its wanted state; they
// only add (CREATE ... IF NOT EXISTS, ALTER USER, GRANT), never drop or
// revoke. Galera replicates them (DDL, total order).
func serviceDBStatements(u ServiceUser, s ServiceDBState, host, password string) string {
	var b strings.Builder
	acct := Quote(u.Name) + "@" + Quote(host)
	for _, d := range s.MissingDatabases {
		fmt.Fprintf(&b, "CREATE DATABASE IF NOT EXISTS %s;\n", QuoteIdent(d))
	}
	switch {
	case !s.Exists:
		fmt.Fprintf(&b, "CREATE USER IF NOT EXISTS %s IDENTIFIED BY %s;\n", acct, Quote(password))
		fallthrough
	case !s.PasswordOK:
		fmt.Fprintf(&b, "ALTER USER %s IDENTIFIED BY %s;\n", acct, Quote(password))
	}
	for _, d := range s.MissingGrants {
		fmt.Fprintf(&b, "GRANT ALL PRIVILEGES ON %s.* TO %s;\n", QuoteIdent(d), acct)
	}
	return b.String()
}

// describe is the action of one user's step, without any secret.
func describe(u ServiceUser, s ServiceDBState, host string) string {
	var parts []string
	if len(s.MissingDatabases) > 0 {
		parts = append(parts, "create database(s) "+strings.Join(s.MissingDatabases, ", "))
	}
	switch {
	case !s.Exists:
		parts = append(parts, fmt.Sprintf("create user %s@'%s' (password %s from the secrets file)", u.Name, host, u.Secret))
	case !s.PasswordOK:
		parts = append(parts, fmt.Sprintf("set %s@'%s''s password to %s of the secrets file (it changed)", u.Name, host, u.Secret))
	}
	if len(s.MissingGrants) > 0 {
		parts = append(parts, "grant it all privileges on "+strings.Join(s.MissingGrants, ", "))
	}
	return strings.Join(parts, "; ")
}

// ServiceDatabasesPhase creates the OpenStack services' databases and
// users that their rendered configurations connect with: each user
// granted its own databases only, from the management network only, with
// the password of the secrets file. Run after the galera phase, on one
// Synced node (Galera replicates the statements). A second run changes
// nothing; a changed password in the secrets file is applied; grants
// beyond these (the user from another host, other databases, global
// privileges) are reported and left in place.
func ServiceDatabasesPhase(users []ServiceUser) plan.Phase {
	return plan.Phase{Name: "databases", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		return planServiceDBs(ctx, t, users)
	}}
}

func planServiceDBs(ctx context.Context, t *plan.Target, users []ServiceUser) ([]plan.Step, error) {
	host := AdminHost(t.Cluster)
	ctls := t.Cluster.Controllers()
	if len(ctls) == 0 || len(users) == 0 {
		return nil, nil
	}
	// A Synced node answers for the cluster; with none (a cluster still to
	// be formed, seen by a dry run) everything is still to be made.
	var on spec.Node
	found := false
	for _, n := range ctls {
		// A frozen node must not hold the plan: 10 s each, as the galera
		// phase's own look.
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := LocalStatus(qctx, t.Node(n.Name))
		cancel()
		if err == nil && st["wsrep_local_state_comment"] == StateSynced && st["wsrep_cluster_status"] == ClusterPrimary {
			on, found = n, true
			break
		}
	}
	var states []ServiceDBState
	if found {
		var err error
		states, err = InspectServiceDBs(ctx, socketQuery(t, on.Name), host, users, t.Secrets)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", on.Name, err)
		}
	} else {
		on = ctls[0]
		for _, u := range users {
			states = append(states, ServiceDBState{User: u.Name, MissingDatabases: u.Databases, MissingGrants: u.Databases})
		}
	}
	var steps []plan.Step
	for i, u := range users {
		s := states[i]
		for _, o := range s.Other {
			t.Say("databases", on.Name, "note: %s: not given by hastack; left in place (revoke it by hand if it is not wanted)", o)
		}
		if s.Exists && s.PasswordOK && len(s.MissingDatabases) == 0 && len(s.MissingGrants) == 0 {
			continue
		}
		nd := t.Node(on.Name)
		steps = append(steps, plan.Step{Host: on.Name, Wave: 0, Action: describe(u, s, host), Do: func(ctx context.Context) error {
			// Read now, not at planning: the secrets phase of this run may
			// have generated the password.
			if !t.Secrets.Has(u.Secret) {
				return fmt.Errorf("the secrets file has no %s: run the secrets phase ('hastack up' generates it)", u.Secret)
			}
			if !found {
				// Planned before the cluster formed: look again.
				cur, err := InspectServiceDBs(ctx, socketQuery(t, on.Name), host, []ServiceUser{u}, t.Secrets)
				if err != nil {
					return err
				}
				s = cur[0]
			} else if !s.Exists || !s.PasswordOK {
				// The password compared at planning may have been
				// generated since.
				cur, err := InspectServiceDBs(ctx, socketQuery(t, on.Name), host, []ServiceUser{u}, t.Secrets)
				if err != nil {
					return err
				}
				s = cur[0]
			}
			stmts := serviceDBStatements(u, s, host, t.Secrets.Get(u.Secret))
			if stmts == "" {
				return nil
			}
			_, err := SQL(ctx, nd, stmts)
			return err
		}})
	}
	return steps, nil
}

// socketQuery runs a query through the node's local socket as root.
func socketQuery(t *plan.Target, name string) QueryFunc {
	return func(ctx context.Context, query string) ([][]string, error) {
		out, err := SQL(ctx, t.Node(name), query+";")
		if err != nil {
			return nil, err
		}
		var rows [][]string
		for _, line := range strings.Split(out, "\n") {
			if line == "" {
				continue
			}
			f := strings.Split(line, "\t")
			for i := range f {
				if f[i] == "NULL" {
					f[i] = ""
				}
			}
			rows = append(rows, f)
		}
		return rows, nil
	}
}

// TCPQuery runs queries over one connection to a server (status uses it
// as hastack's own user).
func TCPQuery(o ProbeOptions) (QueryFunc, func() error, error) {
	db, err := open(o)
	if err != nil {
		return nil, nil, err
	}
	return func(ctx context.Context, query string) ([][]string, error) {
		rs, err := db.QueryContext(ctx, query)
		if err != nil {
			return nil, err
		}
		defer rs.Close()
		cols, err := rs.Columns()
		if err != nil {
			return nil, err
		}
		var rows [][]string
		for rs.Next() {
			vals := make([]sql.NullString, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rs.Scan(ptrs...); err != nil {
				return nil, err
			}
			row := make([]string, len(cols))
			for i, v := range vals {
				row[i] = v.String
			}
			rows = append(rows, row)
		}
		return rows, rs.Err()
	}, db.Close, nil
}
