// Command hastack builds, verifies, operates and drills the highly-available
// shared services of an OpenStack control plane.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hastack/hastack/internal/cli"
	"github.com/hastack/hastack/internal/lab"
)

func main() {
	// A lab node's init is this binary, re-executed in new namespaces.
	lab.MaybeRunInit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.Args[1:])
	stop()
	// An ExitError without a message (e.g. 'lab exec' passing a command's
	// exit code through) prints nothing.
	var ee *cli.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.Err == nil) {
		fmt.Fprintln(os.Stderr, "hastack:", err)
	}
	os.Exit(cli.ExitCode(err))
}
