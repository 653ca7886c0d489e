package deploy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// globNode answers the secrets phase's look for deployed state: a path
// exists when it is in has.
type globNode struct {
	*fileNode
	has []string
}

func (g *globNode) Run(_ context.Context, c node.Cmd) (node.Result, error) {
	var out strings.Builder
	if len(c.Argv) == 3 && c.Argv[0] == "sh" {
		for _, p := range g.has {
			if strings.Contains(c.Argv[2], "for f in "+p+";") {
				out.WriteString(p + "\n")
			}
		}
	}
	return node.Result{Stdout: []byte(out.String())}, nil
}

// A service's password missing from the secrets file is generated on a
// cluster without its database, and refused, with nothing written, on one
// that has it.
func TestSecretsExtraRefusedWhenDeployed(t *testing.T) {
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "x", Controllers: 1, Computes: 0})
	if err != nil {
		t.Fatal(err)
	}
	c, ps := spec.Parse(data)
	if ps.Err() != nil {
		t.Fatal(ps.Err())
	}
	for _, tc := range []struct {
		name    string
		has     []string
		refused bool
	}{
		{"fresh", nil, false},
		{"database exists", []string{"/var/lib/mysql/nova"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "x.secrets.yaml")
			store, err := secrets.Open(path, "x")
			if err != nil {
				t.Fatal(err)
			}
			// The layer's own secrets are there; the service's is not.
			store.Set(store.Generate(secrets.Names()...))
			if err := store.Save(); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(path)
			n := &globNode{fileNode: &fileNode{name: "ctl1", files: map[string][]byte{}}, has: tc.has}
			tg := &plan.Target{Cluster: c, Nodes: map[string]node.Node{"ctl1": n}, Secrets: store.Values()}
			ph := Secrets(store, Extra{Name: "database/nova", What: "database nova", Glob: "/var/lib/mysql/nova"}, Extra{Name: "openstack/key"})
			steps, err := ph.Plan(context.Background(), tg)
			if tc.refused {
				if err == nil || !strings.Contains(err.Error(), "ctl1 has database nova (/var/lib/mysql/nova)") || !strings.Contains(err.Error(), "no database/nova") {
					t.Fatalf("not refused as it should be: %v", err)
				}
				after, _ := os.ReadFile(path)
				if string(after) != string(before) {
					t.Error("the refused phase changed the secrets file")
				}
				return
			}
			if err != nil || len(steps) != 1 {
				t.Fatalf("steps %d, err %v", len(steps), err)
			}
			if !strings.Contains(steps[0].Action, "database/nova, openstack/key") {
				t.Errorf("action: %s", steps[0].Action)
			}
			if err := steps[0].Do(context.Background()); err != nil {
				t.Fatal(err)
			}
			if !tg.Secrets.Has("database/nova") || !tg.Secrets.Has("openstack/key") {
				t.Error("the secrets were not generated")
			}
		})
	}
}
