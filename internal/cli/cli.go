// Package cli maps hastack's command line onto the library. It stays thin:
// each command turns flags into options and calls one function.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Streams are the standard streams a command reads and writes.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// ExitError carries the process exit code for main.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Exit codes shared by every command.
const (
	ExitOK      = 0
	ExitFailed  = 1
	ExitUsage   = 2
	defaultSpec = "hastack.yaml"
)

// ExitCode maps an error returned by Run to a process exit code.
func ExitCode(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.Code
	default:
		return ExitFailed
	}
}

// Run executes the hastack command line.
func Run(ctx context.Context, s Streams, args []string) error {
	root := newRoot(s)
	// A command's own code starts in its RunE. An error cobra returns
	// before any RunE started comes from parsing the command line
	// (unknown command or flag, a bad flag value, wrong arguments): a
	// usage error, told apart by where it arose, not by its words.
	started := false
	markRuns(root, &started)
	root.SetArgs(args)
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	err := root.ExecuteContext(ctx)
	if err != nil && !isExit(err) {
		var ue *usageError
		if errors.As(err, &ue) || !started {
			return &ExitError{Code: ExitUsage, Err: err}
		}
	}
	return err
}

// markRuns wraps every command's RunE so that *started is set when one
// begins.
func markRuns(c *cobra.Command, started *bool) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			*started = true
			return run(cmd, args)
		}
	}
	for _, sub := range c.Commands() {
		markRuns(sub, started)
	}
}

func isExit(err error) bool {
	var ee *ExitError
	return errors.As(err, &ee)
}

type usageError struct{ msg string }

func (u *usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: &usageError{fmt.Sprintf(format, a...)}}
}

func newRoot(s Streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "hastack",
		Short: "Build, verify, operate and drill the HA shared services of an OpenStack control plane",
		Long: `hastack builds, verifies, operates and drills the highly-available shared
services every OpenStack control plane stands on: time (chrony), cache
(memcached), database (MariaDB Galera), message bus (RabbitMQ) and the
database endpoint (HAProxy + keepalived), on real hosts or on a lab of
virtual nodes on one Linux machine.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInit(s), newValidate(s), newRender(s), newLab(s), newUp(s), newStatus(s), newCheck(s), newDemo(s), newAgent(s), newLint(s), newRecover(s), newDrill(s), newServe(s), newRestart(s), newNode(s))
	return root
}
