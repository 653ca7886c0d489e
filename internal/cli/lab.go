package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hastack/hastack/internal/engines"
	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/spec"
)

// labFlags are shared by every lab command. The state folder and prefix
// let tests (and the curious) run a lab beside the default one.
type labFlags struct {
	stateDir string
	prefix   string
}

func (f *labFlags) options(s Streams) lab.Options {
	return lab.Options{StateDir: f.stateDir, Prefix: f.prefix, Log: func(format string, a ...any) {
		fmt.Fprintf(s.Out, format+"\n", a...)
	}}
}

// add registers the flags: on every lab command, and on the commands that
// reach lab nodes (up, status, check).
func (f *labFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.stateDir, "state-dir", "", "where the lab keeps its state, node folders and snapshots (default $"+lab.EnvStateDir+" or "+lab.DefaultStateDir+")")
	fs.StringVar(&f.prefix, "prefix", "", "prefix of the lab's bridges, veths and namespaces, at most 4 characters (default $"+lab.EnvPrefix+" or hs)")
}

// quiet is the lab's place without progress lines (status, check).
func (f *labFlags) quiet() lab.Options {
	return lab.Options{StateDir: f.stateDir, Prefix: f.prefix}
}

func (f *labFlags) open(s Streams) (*lab.Lab, error) {
	return lab.Open(f.options(s))
}

func newLab(s Streams) *cobra.Command {
	f := &labFlags{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Virtual nodes on this machine: up, list, exec, snapshots, faults, down",
		Long: `A lab is one virtual node per spec node on this Linux machine: each node has
its own network namespace (management and provider NICs on host bridges),
hostname, PID namespace, and private copies of the engines' folders at their
standard paths. hastack talks to lab nodes exactly as to real hosts. Needs root.`,
		Example: `  hastack lab up                  # default lab: 3 controllers, 1 compute
  hastack lab list
  hastack lab exec ctl1 -- hostname
  hastack lab down`,
	}
	f.add(cmd.PersistentFlags())
	cmd.AddCommand(newLabUp(s, f), newLabList(s, f), newLabExec(s, f), newLabDown(s, f),
		newLabSnapshot(s, f), newLabRollback(s, f), newLabSnapshots(s, f), newLabFault(s, f), newLabReboot(s, f))
	return cmd
}

func newLabUp(s Streams, f *labFlags) *cobra.Command {
	var file string
	var withSSH bool
	var osName string
	var bare bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Make one virtual node per spec node",
		Long: `Make one virtual node per node of the spec, plus a stand-in time server for
each upstream NTP address (the lab has no internet). With no -f and no
./hastack.yaml, a default lab of 3 controllers and 1 compute is made and its
spec written to ./hastack.yaml, so every other command finds it.

With --ssh, every node also runs an sshd on its management address (port 22,
a host key of its own, the lab's client key authorized for root), the nodes'
host keys are written to <spec>.known_hosts beside the spec, and the spec gets
a spec.ssh block: from then on up, status and check reach the nodes over SSH,
exactly as real hosts. Delete the block to use the lab transport again.`,
		Example: `  hastack lab up
  hastack lab up -f big.yaml
  hastack lab up --ssh && hastack up     # the deploy over SSH`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			if bare && osName == "" {
				return usagef("--bare needs --os: the namespace lab uses this machine's packages")
			}
			if osName != "" {
				// Refused before anything is made.
				if _, err := lab.ParseOS(osName); err != nil {
					return usagef("%v", err)
				}
				withSSH = true // booted hosts are reached over SSH only
			}
			c, err := loadSpec(path, s.Err)
			if err != nil {
				return err
			}
			if withSSH {
				// Refused before the lab is made: nothing to undo.
				for i, n := range c.Spec.Nodes {
					if n.SSH != nil {
						return fmt.Errorf("--ssh: spec.nodes[%d] (%s) has an ssh block of its own, which would override the lab's spec.ssh: remove it first", i, n.Name)
					}
				}
			}
			opts := f.options(s)
			opts.OS, opts.Bare = osName, bare
			l, err := lab.Up(cmd.Context(), c, path, opts)
			if err != nil {
				return err
			}
			if withSSH {
				return labSSH(cmd.Context(), s, l, path)
			}
			if c.Spec.SSH != nil {
				fmt.Fprintf(s.Out, "note: %s has spec.ssh, so hastack reaches the nodes over SSH; 'hastack lab up --ssh' starts sshd in the lab nodes and points spec.ssh at them\n", path)
			}
			fmt.Fprintln(s.Out, "next: hastack lab list; hastack lab exec <node> -- <command>; hastack lab down")
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "cluster spec (default ./hastack.yaml, written if absent)")
	cmd.Flags().StringVar(&osName, "os", "", "make every node a booted Debian host with systemd as PID 1 (debian-12 or debian-13), reached over SSH; the base image is built once per release under the state folder")
	cmd.Flags().BoolVar(&bare, "bare", false, "with --os: hosts without the engines' packages; hastack's packages phase installs them from the lab's package repository")
	cmd.Flags().BoolVar(&withSSH, "ssh", false, "run sshd in every node and point the spec's ssh block at them: later commands reach the nodes over SSH")
	return cmd
}

// labSSH makes the lab's nodes reachable over SSH and points the spec at
// them (lab.PointSpecAtSSH).
func labSSH(ctx context.Context, s Streams, l *lab.Lab, specPath string) error {
	msg, err := l.PointSpecAtSSH(ctx, specPath)
	if err != nil {
		return err
	}
	fmt.Fprintln(s.Out, msg)
	return nil
}

func newLabList(s Streams, f *labFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "One line per lab node: name, role, addresses",
		Example: "  hastack lab list\n  hastack lab list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" && output != "text" {
				return usagef("-o %q: use json or text", output)
			}
			l, err := f.open(s)
			if err != nil {
				return err
			}
			entries := l.List()
			if output == "json" {
				if entries == nil {
					entries = []lab.Entry{}
				}
				enc := json.NewEncoder(s.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(entries)
			}
			tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tADDRESS\tOTHER ADDRESSES\tSTATE")
			for _, e := range entries {
				var other []string
				for netName, a := range e.Addresses {
					if a != e.Address {
						other = append(other, netName+"="+a)
					}
				}
				state := "running"
				if !e.Running {
					state = "GONE"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, e.Role, e.Address, strings.Join(other, ","), state)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func newLabExec(s Streams, f *labFlags) *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "exec NODE [-- COMMAND...]",
		Short: "Run a command (or a shell) inside a lab node",
		Long: `Run a command inside a lab node: its namespaces, its hostname, its folders.
Standard input, output and the exit code pass through. With no command, a
login shell.`,
		Example: "  hastack lab exec ctl1 -- hostname\n  hastack lab exec ctl2",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.open(s)
			if err != nil {
				return err
			}
			nd, err := l.Node(args[0])
			if err != nil {
				return err
			}
			argv := args[1:]
			if len(argv) == 0 {
				argv = []string{"/bin/bash", "-l"}
			}
			c, err := nd.Command(cmd.Context(), argv, user, "", nil)
			if err != nil {
				return err
			}
			c.Stdin, c.Stdout, c.Stderr = s.In, s.Out, s.Err
			err = c.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return &ExitError{Code: ee.ExitCode()}
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&user, "user", "u", "", "run as this user")
	return cmd
}

func newLabDown(s Streams, f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove everything the lab made",
		Long: `Remove every node (and every process in it), network namespace, veth, bridge,
firewall rule and file the lab made. Safe to repeat; works after a
half-finished 'lab up' and from a new shell. The spec file is kept.`,
		Example: "  hastack lab down",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return lab.Down(cmd.Context(), f.options(s))
		},
	}
}

func newLabSnapshot(s Streams, f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "snapshot NAME",
		Short: "Capture every node's state (engines stopped while copying)",
		Long: `Stop every service on every node (in reverse start order), copy every node's
folders, and start the services again. The copy is consistent: no engine
writes while it is taken.`,
		Example: "  hastack lab snapshot before-upgrade",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.open(s)
			if err != nil {
				return err
			}
			info, err := l.Snapshot(cmd.Context(), args[0], restarter(s))
			if err != nil {
				return err
			}
			fmt.Fprintf(s.Out, "snapshot %s: %d MB, %d services\n", info.Name, info.Bytes>>20, len(info.Services))
			return nil
		},
	}
}

func newLabRollback(s Streams, f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "rollback NAME",
		Short:   "Restore every node to a snapshot and start what ran then",
		Example: "  hastack lab rollback before-upgrade",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.open(s)
			if err != nil {
				return err
			}
			return l.Rollback(cmd.Context(), args[0], restarter(s))
		},
	}
}

func newLabSnapshots(s Streams, f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "snapshots",
		Short:   "List the lab's snapshots",
		Example: "  hastack lab snapshots",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := f.open(s)
			if err != nil {
				return err
			}
			all, err := l.Snapshots()
			if err != nil {
				return err
			}
			if len(all) == 0 {
				fmt.Fprintln(s.Out, "no snapshots; take one with 'hastack lab snapshot NAME'")
				return nil
			}
			tw := tabwriter.NewWriter(s.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tTAKEN\tSIZE\tSERVICES")
			for _, i := range all {
				fmt.Fprintf(tw, "%s\t%s\t%d MB\t%d\n", i.Name, i.Created.Local().Format("2006-01-02 15:04:05"), i.Bytes>>20, len(i.Services))
			}
			return tw.Flush()
		},
	}
}

func newLabFault(s Streams, f *labFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fault",
		Short: "Break lab nodes on purpose: kill, freeze/thaw, partition/heal",
		Example: `  hastack lab fault kill ctl2 mariadb
  hastack lab fault freeze ctl3 && hastack lab fault thaw ctl3
  hastack lab fault partition ctl1 && hastack lab fault heal ctl1`,
	}
	type faultFn func(l *lab.Lab, cmd *cobra.Command, args []string) (string, error)
	add := func(use, short string, nargs cobra.PositionalArgs, fn faultFn) {
		cmd.AddCommand(&cobra.Command{
			Use: use, Short: short, Args: nargs,
			Example: "  hastack lab fault " + use,
			RunE: func(c *cobra.Command, args []string) error {
				l, err := f.open(s)
				if err != nil {
					return err
				}
				msg, err := fn(l, c, args)
				if err != nil {
					return err
				}
				fmt.Fprintln(s.Out, msg)
				return nil
			},
		})
	}
	add("kill NODE [PROCESS]", "SIGKILL a service or process by name, or every process of the node", cobra.RangeArgs(1, 2),
		func(l *lab.Lab, c *cobra.Command, args []string) (string, error) {
			p := ""
			if len(args) == 2 {
				p = args[1]
			}
			return l.Kill(c.Context(), args[0], p)
		})
	add("freeze NODE", "SIGSTOP every process of the node (a hung host)", cobra.ExactArgs(1),
		func(l *lab.Lab, c *cobra.Command, args []string) (string, error) {
			return l.Freeze(c.Context(), args[0])
		})
	add("thaw NODE", "SIGCONT every stopped process of the node", cobra.ExactArgs(1),
		func(l *lab.Lab, c *cobra.Command, args []string) (string, error) { return l.Thaw(c.Context(), args[0]) })
	add("partition NODE", "Drop every packet in or out of the node's management NIC", cobra.ExactArgs(1),
		func(l *lab.Lab, c *cobra.Command, args []string) (string, error) {
			return l.Partition(c.Context(), args[0])
		})
	add("heal NODE", "Restore the node's management network", cobra.ExactArgs(1),
		func(l *lab.Lab, c *cobra.Command, args []string) (string, error) { return l.Heal(c.Context(), args[0]) })
	return cmd
}

func restarter(s Streams) lab.Restarter {
	// The engines' services are brought back by 'up' itself, which knows
	// the order they need (Galera bootstraps from the node that stopped
	// last), rather than by replaying recorded command lines.
	return func(ctx context.Context, l *lab.Lab, svcs []lab.RunningService) error {
		st := l.State()
		c, err := (*spec.Cluster)(nil), error(nil)
		if st.SpecPath != "" {
			c, err = loadSpec(st.SpecPath, s.Err)
		}
		var others []lab.RunningService
		ours := 0
		for _, sv := range svcs {
			_, specNode := func() (spec.Node, bool) {
				if c == nil {
					return spec.Node{}, false
				}
				return c.Node(sv.Node)
			}()
			if specNode && engines.IsService(sv.Service.Name) {
				ours++
				continue
			}
			others = append(others, sv)
		}
		if err := lab.DefaultRestarter(ctx, l, others); err != nil {
			return err
		}
		if ours == 0 {
			return nil
		}
		if c == nil {
			return fmt.Errorf("cannot restart the engines: the lab's spec %q does not load (%v); fix it and run 'hastack up'", st.SpecPath, err)
		}
		fmt.Fprintf(s.Out, "starting the HA layer again with 'hastack up -f %s'\n", st.SpecPath)
		return runUp(ctx, s, c, st.SpecPath, upOptions{}, l)
	}
}

func newLabReboot(s Streams, f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "reboot NODE...",
		Short: "Reboot booted hosts (a lab made with --os): systemd stops cleanly, the host boots again",
		Example: `  hastack lab reboot ctl1
  hastack lab reboot ctl1 ctl2 ctl3      # every controller at once`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := f.open(s)
			if err != nil {
				return err
			}
			lines, err := l.Reboot(cmd.Context(), args)
			for _, line := range lines {
				fmt.Fprintln(s.Out, line)
			}
			return err
		},
	}
}
