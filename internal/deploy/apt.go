package deploy

import (
	"context"
	"fmt"
	"strings"

	"github.com/hastack/hastack/internal/node"
)

// aptInstall installs packages with apt-get. A host whose package lists
// do not know a package (never updated, or cleaned as images are) gets
// 'apt-get update' once and a second try. A host that cannot fetch packages
// at all (no route to a mirror) gets an error that says what to do, with
// the packages named.
func aptInstall(ctx context.Context, nd node.Node, pkgs []string) error {
	install := func() error {
		_, err := nd.Run(ctx, node.Cmd{
			Argv: append([]string{"apt-get", "install", "-y", "-q", "--no-install-recommends"}, pkgs...),
			Env:  []string{"DEBIAN_FRONTEND=noninteractive"},
		})
		return err
	}
	err := install()
	if err == nil || !strings.Contains(err.Error(), "Unable to locate package") && !strings.Contains(err.Error(), "has no installation candidate") && !strings.Contains(err.Error(), "Failed to fetch") {
		return err
	}
	if _, uerr := nd.Run(ctx, node.Cmd{Argv: []string{"apt-get", "update", "-q"}, Env: []string{"DEBIAN_FRONTEND=noninteractive"}}); uerr != nil {
		return offline(pkgs, fmt.Errorf("%w; then apt-get update: %w", err, uerr))
	}
	if err := install(); err != nil {
		return offline(pkgs, err)
	}
	return nil
}

func offline(pkgs []string, err error) error {
	return fmt.Errorf("%w\nthe host cannot fetch %s: give it a Debian mirror or a local repository it can reach (an apt source in /etc/apt/sources.list.d/), or install the packages by hand (apt-get download on a machine that can, then dpkg -i on the host), and run 'hastack up' again", err, strings.Join(pkgs, " "))
}
