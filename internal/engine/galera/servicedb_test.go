package galera

import (
	"context"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/secrets"
)

// fakeDB answers InspectServiceDBs' queries from canned rows, and records
// them.
type fakeDB struct {
	schemas, accounts, grants, tables [][]string
	queries                           []string
}

func (f *fakeDB) query(_ context.Context, q string) ([][]string, error) {
	f.queries = append(f.queries, q)
	switch {
	case strings.Contains(q, "information_schema.SCHEMATA"):
		return f.schemas, nil
	case strings.Contains(q, "mysql.global_priv"):
		return f.accounts, nil
	case strings.Contains(q, "mysql.tables_priv"):
		return f.tables, nil
	case strings.Contains(q, "mysql.db"):
		return f.grants, nil
	}
	return nil, nil
}

const mgmt = "10.1.0.0/255.255.255.0"

var users = []ServiceUser{
	{Name: "nova", Secret: "database/nova", Databases: []string{"nova", "nova_api", "nova_cell0"}},
	{Name: "cinder", Secret: "database/cinder", Databases: []string{"cinder"}},
}

func TestInspectServiceDBs(t *testing.T) {
	sec := secrets.NewValues(map[string]string{"database/nova": "pw'nova", "database/cinder": "pwc"})
	f := &fakeDB{
		schemas:  [][]string{{"nova"}, {"nova_api"}, {"cinder"}},
		accounts: [][]string{{"nova", mgmt, "0", "1"}, {"nova", "%", "0", "0"}, {"cinder", mgmt, "1024", "0"}},
		grants: [][]string{
			{"nova", mgmt, "nova", "1"}, {"nova", mgmt, "nova_api", "0"}, {"nova", mgmt, "keystone", "1"},
			{"cinder", mgmt, "cinder", "1"},
		},
		tables: [][]string{{"cinder", mgmt, "mysql", "user"}},
	}
	got, err := InspectServiceDBs(context.Background(), f.query, mgmt, users, sec)
	if err != nil {
		t.Fatal(err)
	}
	nova, cinder := got[0], got[1]
	if !nova.Exists || !nova.PasswordOK {
		t.Errorf("nova: %+v", nova)
	}
	if strings.Join(nova.MissingDatabases, ",") != "nova_cell0" || strings.Join(nova.MissingGrants, ",") != "nova_api,nova_cell0" {
		t.Errorf("nova missing: %+v", nova)
	}
	if len(nova.Other) != 2 || !strings.Contains(strings.Join(nova.Other, ";"), "nova@'%' exists too") || !strings.Contains(strings.Join(nova.Other, ";"), "granted database keystone") {
		t.Errorf("nova other: %q", nova.Other)
	}
	if !cinder.Exists || cinder.PasswordOK {
		t.Errorf("cinder: %+v", cinder)
	}
	if m := cinder.Missing(); m != "password differs from the secrets file" {
		t.Errorf("cinder missing: %q", m)
	}
	if len(cinder.Other) != 2 {
		t.Errorf("cinder other (global privileges, a table grant): %q", cinder.Other)
	}
	// The password is compared on the server, quoted; never read back.
	joined := strings.Join(f.queries, "\n")
	if !strings.Contains(joined, `PASSWORD('pw\'nova')`) {
		t.Errorf("password not compared as a quoted literal:\n%s", joined)
	}
	if strings.Contains(joined, "SELECT authentication_string") {
		t.Error("a password hash is read back")
	}

	// A secrets file without the password: nothing compares, the state
	// says so.
	got, err = InspectServiceDBs(context.Background(), (&fakeDB{}).query, mgmt, users[:1], secrets.NewValues(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].NoSecret || !strings.Contains(got[0].Missing(), "no password in the secrets file") {
		t.Errorf("no secret: %+v %q", got[0], got[0].Missing())
	}
}

func TestServiceDBStatementsOnlyAdd(t *testing.T) {
	u := users[0]
	fresh := ServiceDBState{User: "nova", MissingDatabases: u.Databases, MissingGrants: u.Databases}
	s := serviceDBStatements(u, fresh, mgmt, "p'w")
	for _, want := range []string{
		"CREATE DATABASE IF NOT EXISTS `nova`;", "CREATE DATABASE IF NOT EXISTS `nova_cell0`;",
		`CREATE USER IF NOT EXISTS 'nova'@'10.1.0.0/255.255.255.0' IDENTIFIED BY 'p\'w';`,
		"GRANT ALL PRIVILEGES ON `nova_api`.* TO 'nova'@'10.1.0.0/255.255.255.0';",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in\n%s", want, s)
		}
	}
	changed := ServiceDBState{User: "nova", Exists: true}
	if s := serviceDBStatements(u, changed, mgmt, "new"); s != "ALTER USER 'nova'@'10.1.0.0/255.255.255.0' IDENTIFIED BY 'new';\n" {
		t.Errorf("changed password: %q", s)
	}
	if s := serviceDBStatements(u, ServiceDBState{User: "nova", Exists: true, PasswordOK: true, Other: []string{"x"}}, mgmt, "pw"); s != "" {
		t.Errorf("nothing to do, yet: %q", s)
	}
	for _, st := range []ServiceDBState{fresh, changed} {
		s := strings.ToUpper(serviceDBStatements(u, st, mgmt, "pw"))
		if strings.Contains(s, "DROP") || strings.Contains(s, "REVOKE") {
			t.Errorf("statements remove something: %s", s)
		}
	}
	if d := describe(u, fresh, mgmt); strings.Contains(d, "p'w") || !strings.Contains(d, "database/nova") {
		t.Errorf("describe: %q", d)
	}
}
