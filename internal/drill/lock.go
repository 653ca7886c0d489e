package drill

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// LockDir is the drill lock on the first controller. A folder, because
// mkdir is atomic on every host; in /run, because a reboot ends any drill.
const LockDir = "/run/hastack/drill.lock"

// Lock takes the cluster's drill lock on n (the first controller) through
// the node interface, so it works on lab nodes and SSH hosts alike. The
// returned function releases it. A lock held by another drill is ErrBusy,
// with its owner.
func Lock(ctx context.Context, n node.Node, scenarios []string) (func(), error) {
	if _, err := n.Run(ctx, node.Cmd{Argv: []string{"mkdir", "-p", "/run/hastack"}}); err != nil {
		return nil, err
	}
	if _, err := n.Run(ctx, node.Cmd{Argv: []string{"mkdir", LockDir}}); err != nil {
		var ce *node.CommandError
		if !errors.As(err, &ce) {
			return nil, err
		}
		owner, _ := n.ReadFile(ctx, LockDir+"/owner")
		return nil, fmt.Errorf("%w: %s holds %s (%s); if that drill is gone, remove the folder on %s", ErrBusy, n.Name(), LockDir, strings.TrimSpace(string(owner)), n.Name())
	}
	host, _ := os.Hostname()
	owner := fmt.Sprintf("hastack drill run %s, pid %d on %s, since %s", strings.Join(scenarios, " "), os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	if err := n.WriteFile(ctx, LockDir+"/owner", []byte(owner+"\n"), 0o644, ""); err != nil {
		_, _ = n.Run(ctx, node.Cmd{Argv: []string{"rm", "-rf", LockDir}})
		return nil, err
	}
	return func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = n.Run(c, node.Cmd{Argv: []string{"rm", "-rf", LockDir}})
	}, nil
}
