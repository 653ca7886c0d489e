package check

import (
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/spec"
)

func TestJudgeListeners(t *testing.T) {
	c := &spec.Cluster{}
	c.Spec.Database.Endpoint.VIP = "10.77.0.10"
	n := spec.Node{Name: "ctl1", Address: "10.77.0.11"}
	cases := []struct {
		name   string
		ls     []listener
		status Status
		has    string
	}{
		{"engines on the management address", []listener{
			{"tcp", "10.77.0.11", 3306, "mariadbd"}, {"tcp", "10.77.0.10", 3306, "haproxy"},
			{"udp", "10.77.0.11", 123, "chronyd"}, {"tcp", "127.0.0.1", 25672, "beam.smp"},
		}, OK, "4 engine sockets"},
		// The Erlang VM's DNS resolver: a client socket, not a service.
		{"resolver socket of the Erlang VM", []listener{
			{"tcp", "10.77.0.11", 5672, "beam.smp"}, {"udp", "0.0.0.0", 43104, "beam.smp"},
		}, OK, "1 engine sockets"},
		{"memcached on UDP", []listener{{"udp", "10.77.0.11", 11211, "memcached"}}, Fail, "memcached listens on UDP"},
		{"mariadb on every address", []listener{{"tcp", "0.0.0.0", 3306, "mariadbd"}}, Fail, "not only on the management address"},
		{"chronyd NTP on every address", []listener{{"udp", "0.0.0.0", 123, "chronyd"}}, Fail, "chronyd listens on udp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nf := &nodeFacts{Spec: n}
			nf.Listeners = measured(tc.ls, nil)
			r := judgeListeners(c, nf)
			if r.Status != tc.status || !strings.Contains(r.Value, tc.has) {
				t.Errorf("%s: %q, want %s containing %q", r.Status, r.Value, tc.status, tc.has)
			}
		})
	}
}
