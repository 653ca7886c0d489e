package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hastack/hastack/internal/engine/chrony"
	"github.com/hastack/hastack/internal/engine/endpoint"
	"github.com/hastack/hastack/internal/engine/galera"
	"github.com/hastack/hastack/internal/engine/memcached"
	"github.com/hastack/hastack/internal/engine/rabbitmq"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/sshnode"
)

func TestSSHConfigResolvesPaths(t *testing.T) {
	c, ps, err := spec.Load("../spec/testdata/valid-ssh.yaml")
	if err != nil || ps.Err() != nil {
		t.Fatal(err, ps.Err())
	}
	home, _ := os.UserHomeDir()
	cfg, err := sshConfig(c, c.Spec.Nodes[1], "/srv/cloud/hastack.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := sshnode.Config{Name: "ctl2", Address: "10.1.0.12", Host: "ctl2.admin.example", Port: 2222, User: "debian",
		IdentityFile: filepath.Join(home, ".ssh/hastack_ed25519"), KnownHosts: "/srv/cloud/known_hosts"}
	if cfg != want {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
}

// Every engine's service has the Debian unit that runs it on a systemd
// host; hastack's own agent gets a unit of its own.
func TestEngineServicesHaveUnits(t *testing.T) {
	for svc, unit := range map[string]string{
		chrony.Service(false).Name:  "chrony.service",
		memcached.Service(nil).Name: "memcached.service",
		galera.ServiceName:          "mariadb.service",
		rabbitmq.ServiceName:        "rabbitmq-server.service",
		endpoint.HAProxyService:     "haproxy.service",
		endpoint.KeepalivedService:  "keepalived.service",
		endpoint.AgentService:       "hastack-galera-health.service",
	} {
		if got := sshnode.Unit(svc); got != unit {
			t.Errorf("service %s runs under %s, want %s", svc, got, unit)
		}
	}
}
