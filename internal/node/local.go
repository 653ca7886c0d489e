package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
)

// Local is this machine as a node: commands run here, files are read and
// written here. It has no supervisor of hastack's; it serves what runs on
// the machine hastack runs on (installing the lab's packages).
type Local struct{}

var _ Node = Local{}

// Name is "localhost".
func (Local) Name() string { return "localhost" }

// Address is the loopback address.
func (Local) Address() string { return "127.0.0.1" }

// Run runs a command on this machine as hastack's user.
func (Local) Run(ctx context.Context, c Cmd) (Result, error) {
	if len(c.Argv) == 0 {
		return Result{}, errors.New("localhost: empty command")
	}
	if c.User != "" && c.User != "root" {
		return Result{}, fmt.Errorf("localhost: %s: running as %s is not supported here", strings.Join(c.Argv, " "), c.User)
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Dir = c.Dir
	cmd.Stdin = c.Stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	if c.Stderr != nil {
		cmd.Stderr = c.Stderr
	}
	err := cmd.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.ExitCode = ee.ExitCode()
		out := strings.TrimSpace(stderr.String())
		if out == "" {
			out = strings.TrimSpace(stdout.String())
		}
		return res, &CommandError{Node: "localhost", Argv: c.Argv, ExitCode: res.ExitCode, Output: out}
	}
	if err != nil {
		return res, fmt.Errorf("localhost: %s: %w", strings.Join(c.Argv, " "), err)
	}
	return res, nil
}

// WriteFile writes a file on this machine (owner is not changed).
func (Local) WriteFile(_ context.Context, path string, data []byte, mode fs.FileMode, _ string) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// ReadFile reads a file on this machine.
func (Local) ReadFile(_ context.Context, path string) ([]byte, error) { return os.ReadFile(path) }

// Services is nil: hastack supervises nothing on the machine it runs on.
func (Local) Services() Supervisor { return nil }
