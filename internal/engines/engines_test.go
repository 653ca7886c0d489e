package engines

import (
	"slices"
	"testing"

	"github.com/hastack/hastack/internal/spec"
)

// Every engine is described whole, once: a renderer and phases, services
// with unique names, packages for controllers; and the lookups agree with
// the list.
func TestDescriptors(t *testing.T) {
	seen := map[string]string{}
	for _, e := range All() {
		if e.Name == "" || e.Renderer == nil || e.Phases == nil || !e.HostSetting && (len(e.Services) == 0 || len(e.Packages[spec.RoleController]) == 0) {
			t.Errorf("engine %q is not fully described: %+v", e.Name, e)
		}
		if e.Renderer.Name() != e.Name {
			t.Errorf("engine %q renders as %q", e.Name, e.Renderer.Name())
		}
		if len(e.Phases(Inputs{})) == 0 {
			t.Errorf("engine %q has no phase", e.Name)
		}
		for _, s := range e.Services {
			if other, dup := seen[s.Name]; dup {
				t.Errorf("service %q belongs to %s and %s", s.Name, other, e.Name)
			}
			seen[s.Name] = e.Name
			if !IsService(s.Name) || Unit(s.Name) != s.Unit {
				t.Errorf("lookups disagree for service %q", s.Name)
			}
		}
	}
	if Unit("mariadb") != "mariadb.service" || Unit("galera-health") != "" || IsService("sshd") {
		t.Error("unit lookups")
	}
	ctl := PackagesFor(spec.Node{Role: spec.RoleController})
	for _, p := range []string{"mariadb-server", "galera-4", "rabbitmq-server", "memcached", "chrony", "haproxy", "keepalived", "iputils-ping"} {
		if !slices.Contains(ctl, p) {
			t.Errorf("controller packages lack %s: %v", p, ctl)
		}
	}
	if cmp := PackagesFor(spec.Node{Role: spec.RoleCompute}); !slices.Equal(cmp, []string{"chrony"}) {
		t.Errorf("compute packages %v", cmp)
	}
	var names []string
	for _, p := range Phases(Inputs{}) {
		names = append(names, p.Name)
	}
	if want := []string{"chrony", "neighbour", "memcached", "galera", "databases", "rabbitmq-package", "rabbitmq", "endpoint"}; !slices.Equal(names, want) {
		t.Errorf("phases %v, want %v", names, want)
	}
}
