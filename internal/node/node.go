// Package node is the one interface through which hastack acts on a host:
// run a command, read and write a file, and start, stop, signal and query
// long-running processes. Lab nodes (namespaces on this machine) and real
// hosts (SSH) both implement it, so every deploy phase, probe and drill runs
// unchanged on either.
package node

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"syscall"
	"time"
)

// Node is a host hastack can act on.
type Node interface {
	// Name is the node's name in the spec (and its hostname).
	Name() string
	// Address is the node's management address; hastack reaches the
	// engines' ports there directly.
	Address() string
	// Run runs a command on the node and waits for it. A command that exits
	// non-zero returns a *CommandError carrying argv, exit code and output.
	Run(ctx context.Context, cmd Cmd) (Result, error)
	// WriteFile writes data to path atomically, creating parent folders,
	// with the given mode and owner ("" is root).
	WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode, owner string) error
	// ReadFile reads a file; a missing file is an error matching fs.ErrNotExist.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// Services manages the node's long-running processes.
	Services() Supervisor
}

// Cmd is a command to run on a node.
type Cmd struct {
	Argv  []string
	Stdin io.Reader
	Env   []string // extra KEY=VALUE pairs
	Dir   string
	User  string // run as this user; "" is root
	// Stdout and Stderr, when set, receive the output as it comes instead
	// of it being captured in Result.
	Stdout io.Writer
	Stderr io.Writer
}

// Result is the outcome of a command.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// CommandError is a command that ran and failed.
type CommandError struct {
	Node     string
	Argv     []string
	ExitCode int
	Output   string // stderr, or stdout when stderr is empty; trimmed
}

func (e *CommandError) Error() string {
	out := e.Output
	if len(out) > 2000 {
		out = "..." + out[len(out)-2000:]
	}
	return fmt.Sprintf("%s: %s: exit %d: %s", e.Node, strings.Join(e.Argv, " "), e.ExitCode, out)
}

// Service is a long-running process the node's supervisor keeps.
type Service struct {
	Name string   // e.g. "mariadb", "rabbitmq", "memcached", "chrony"
	Argv []string // absolute path first; the process must stay in the foreground
	Env  []string
	User string // "" is root
	Dir  string
	// LogFile receives stdout and stderr; default /var/log/hastack/<name>.log.
	LogFile string
	// StopSignal is sent first by Stop; default SIGTERM. SIGKILL follows
	// when the process has not exited by Stop's timeout.
	StopSignal syscall.Signal
}

// ServiceState is what the supervisor knows of a service.
type ServiceState struct {
	Name     string    `json:"name"`
	Running  bool      `json:"running"`
	PID      int       `json:"pid,omitempty"` // as seen on the node
	Started  time.Time `json:"started,omitzero"`
	Exited   time.Time `json:"exited,omitzero"`
	ExitCode int       `json:"exitCode"`         // last exit; -1 when killed by a signal
	Signal   string    `json:"signal,omitempty"` // the signal that ended it
	Argv     []string  `json:"argv"`
}

// Disabler is a supervisor whose services come back after a reboot
// unless disabled (systemd). Disable stops nothing: it only keeps the
// service from starting at boot. hastack's own supervisor has no boot of
// its own, so it is not one.
type Disabler interface {
	Disable(ctx context.Context, name string) error
}

// Supervisor starts, stops, signals and queries services on one node.
type Supervisor interface {
	// Start starts the service unless it is already running (then it does
	// nothing). It returns once the process has been started; readiness is
	// the engine's business.
	Start(ctx context.Context, s Service) error
	// Stop sends the stop signal and waits up to timeout, then SIGKILL.
	// Stopping a service that is not running is not an error.
	Stop(ctx context.Context, name string, timeout time.Duration) error
	// Signal sends sig to the service's process.
	Signal(ctx context.Context, name string, sig syscall.Signal) error
	// Status reports one service; an unknown service is not running.
	Status(ctx context.Context, name string) (ServiceState, error)
	// List reports every service the supervisor has started, in start order.
	List(ctx context.Context) ([]ServiceState, error)
}
