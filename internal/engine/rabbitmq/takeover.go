package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/spec"
)

// Debian's rabbitmq-server starts when it is installed (and at every boot),
// and makes a node database of its own: one node, the guest user, the
// package's random Erlang cookie. That is no deployment of this cluster:
// left in place, the node would keep its own one-node cluster (peer
// discovery runs on blank nodes only), and the secrets phase would take it
// for a cluster deployed with lost secrets. TakeOverPhase stops such a
// broker and moves its database aside, so the rabbitmq phase finds a blank
// node. A broker is the package's when hastack never wrote its definitions
// there and its only user is guest; anything else is left to the rabbitmq
// phase, which refuses what it cannot join safely.
func TakeOverPhase() plan.Phase {
	return plan.Phase{Name: "rabbitmq-package", Plan: func(ctx context.Context, t *plan.Target) ([]plan.Step, error) {
		ctls := t.Cluster.Controllers()
		var mu sync.Mutex
		var steps []plan.Step
		err := plan.ForEach(ctx, plan.Names(ctls), func(ctx context.Context, name string) error {
			n, _ := t.Cluster.Node(name)
			nd := t.Node(name)
			fresh, err := packageBroker(ctx, nd, n)
			if err != nil || !fresh {
				return err
			}
			aside := fmt.Sprintf("%s.package-%d", MnesiaBase, time.Now().Unix())
			mu.Lock()
			steps = append(steps, plan.Step{Host: name, Action: fmt.Sprintf("stop the package's RabbitMQ (started by apt, guest only, never deployed by hastack) and move its node database aside to %s", aside), Do: func(ctx context.Context) error {
				if err := nd.Services().Stop(ctx, ServiceName, 2*time.Minute); err != nil {
					return err
				}
				_, err := nd.Run(ctx, node.Cmd{Argv: []string{"mv", MnesiaBase, aside}})
				return err
			}})
			mu.Unlock()
			return nil
		})
		return steps, err
	}}
}

// packageBroker reports whether the node holds the package's own broker
// database and nothing of hastack's.
func packageBroker(ctx context.Context, nd node.Node, n spec.Node) (bool, error) {
	if _, err := nd.ReadFile(ctx, DefinitionsPath); err == nil {
		return false, nil // hastack deployed here
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	res, err := nd.Run(ctx, node.Cmd{Argv: []string{"test", "-e", mnesiaDir(n)}})
	var ce *node.CommandError
	if errors.As(err, &ce) && res.ExitCode == 1 {
		return false, nil // blank
	} else if err != nil {
		return false, err
	}
	running, err := plan.Running(ctx, nd, ServiceName)
	if err != nil {
		return false, err
	}
	if !running {
		// Its users cannot be read without starting it: a stopped
		// database is left to the rabbitmq phase.
		return false, nil
	}
	// The package's broker has no management API and hastack has no
	// credentials for it: ask rabbitmqctl (with the package's cookie).
	res, err = nd.Run(ctx, node.Cmd{Argv: []string{"rabbitmqctl", "-q", "list_users"}})
	if err != nil {
		return false, fmt.Errorf("a RabbitMQ that hastack did not deploy runs here; listing its users: %w", err)
	}
	var users []string
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "user" || f[0] == "Listing" {
			continue
		}
		users = append(users, f[0])
	}
	if len(users) == 1 && users[0] == "guest" {
		return true, nil
	}
	return false, nil
}
