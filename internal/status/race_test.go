package status

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// downNode is a node that answers nothing: every command fails at once.
type downNode struct{ name string }

var errDown = errors.New("node is down")

func (d downNode) Name() string    { return d.name }
func (d downNode) Address() string { return "127.0.0.1" }
func (d downNode) Run(context.Context, node.Cmd) (node.Result, error) {
	return node.Result{}, errDown
}
func (d downNode) WriteFile(context.Context, string, []byte, fs.FileMode, string) error {
	return errDown
}
func (d downNode) ReadFile(context.Context, string) ([]byte, error) { return nil, errDown }
func (d downNode) Services() node.Supervisor                        { return downSup{} }

type downSup struct{}

func (downSup) Start(context.Context, node.Service) error            { return errDown }
func (downSup) Stop(context.Context, string, time.Duration) error    { return errDown }
func (downSup) Signal(context.Context, string, syscall.Signal) error { return errDown }
func (downSup) Status(context.Context, string) (node.ServiceState, error) {
	return node.ServiceState{}, errDown
}
func (downSup) List(context.Context) ([]node.ServiceState, error) { return nil, errDown }

// Collect fans out one probe per engine and node while reading the secrets:
// with no secrets file at all (nothing resolved) it must not race (run
// under -race) and must report every engine down rather than invent a
// password per goroutine.
func TestCollectNoSecretsNoRace(t *testing.T) {
	data, err := os.ReadFile("../spec/testdata/valid-3ctl.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, probs := spec.Parse(data)
	if probs.Err() != nil {
		t.Fatal(probs.Err())
	}
	// Every probe goes to loopback ports nothing listens on.
	nodes := map[string]node.Node{}
	for i := range c.Spec.Nodes {
		c.Spec.Nodes[i].Address = "127.0.0.1"
		nodes[c.Spec.Nodes[i].Name] = downNode{c.Spec.Nodes[i].Name}
	}
	c.Spec.Database.Port = 1
	c.Spec.Memcached.Port = 1
	c.Spec.RabbitMQ.ManagementPort = 1
	c.Spec.Database.Endpoint.VIP = "127.0.0.1"
	c.Spec.Database.Endpoint.Port = 1
	var empty secrets.Values
	for range 3 {
		r := Collect(context.Background(), Target{Cluster: c, Nodes: nodes, Secrets: empty})
		if r.Healthy || r.ExitCode() != 2 {
			t.Fatalf("every engine down, yet verdict %s (exit %d)", r.Verdict, r.ExitCode())
		}
	}
}
