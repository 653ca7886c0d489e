package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/engines"
	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/spec"
	"github.com/hastack/hastack/internal/status"
)

func newDemo(s Streams) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Install what is missing, make the default lab, deploy the HA layer and show its status",
		Long: `The whole job on one machine, as root: install the Debian packages the
engines need (if missing), make a lab of virtual nodes (3 controllers and 1
compute by default, or the nodes of ./hastack.yaml), run 'hastack up' on it,
and print 'hastack status'. Safe to run again: every step keeps what is in
place.`,
		Example: "  hastack demo",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), s, file)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "cluster spec (default ./hastack.yaml, written if absent)")
	return cmd
}

func runDemo(ctx context.Context, s Streams, file string) error {
	if os.Geteuid() != 0 {
		return errors.New("the demo needs root: it installs packages and makes network namespaces (run as root)")
	}
	fmt.Fprintln(s.Out, "== 1/4 packages on this machine (the lab's nodes share them)")
	if err := installHostPackages(ctx, s); err != nil {
		return err
	}
	fmt.Fprintln(s.Out, "== 2/4 lab")
	path := file
	if path == "" {
		path = defaultSpec
		wrote, err := lab.EnsureSpec(path)
		if err != nil {
			return err
		}
		if wrote {
			fmt.Fprintf(s.Out, "wrote %s: the default lab (3 controllers, 1 compute)\n", path)
		}
	}
	c, err := loadSpec(path, s.Err)
	if err != nil {
		return err
	}
	if _, err := lab.Up(ctx, c, path, lab.Options{Log: func(f string, a ...any) { fmt.Fprintf(s.Out, f+"\n", a...) }}); err != nil {
		return err
	}
	fmt.Fprintln(s.Out, "== 3/4 hastack up")
	if err := runUp(ctx, s, c, path, upOptions{}, nil); err != nil {
		return err
	}
	fmt.Fprintln(s.Out, "== 4/4 hastack status")
	t, _, err := target(c, path, lab.Options{})
	if err != nil {
		return err
	}
	r := status.Collect(ctx, statusTarget(t))
	if err := r.WriteText(s.Out, c.Metadata.Name); err != nil {
		return err
	}
	me := "hastack"
	if strings.Contains(os.Args[0], "/") {
		me = os.Args[0]
	}
	tips := strings.ReplaceAll(`
Look around:
  hastack lab list                                  the nodes and their addresses
  hastack lab exec ctl1 -- mariadb -e "SHOW STATUS LIKE 'wsrep_cluster_size'"
  hastack lab exec ctl2                             a shell on a node
  hastack status                                    the view above, again (-o json for scripts)
  hastack lab fault kill ctl1 mariadb; hastack status; hastack up
                                                    break a node, watch, repair
  hastack lab snapshot before; hastack lab rollback before
  hastack lab down                                  remove the lab (the spec %s stays)
`, "hastack ", me+" ")
	fmt.Fprintf(s.Out, tips, path)
	if !r.Healthy {
		return &ExitError{Code: r.ExitCode(), Err: r.Err()}
	}
	return nil
}

// installHostPackages installs the engines' packages on this machine when
// missing, with deploy's installer (services not started by the packages'
// scripts: hastack starts the engines itself).
func installHostPackages(ctx context.Context, s Streams) error {
	want := engines.Packages(spec.RoleController, "iproute2", "iptables", "util-linux", "procps", "iputils-ping")
	fmt.Fprintln(s.Out, "checking this machine's packages")
	done, err := deploy.InstallMissing(ctx, node.Local{}, want)
	if err != nil {
		return err
	}
	if len(done) == 0 {
		fmt.Fprintln(s.Out, "every package is installed")
	} else {
		fmt.Fprintf(s.Out, "installed %s\n", strings.Join(done, " "))
	}
	return nil
}
