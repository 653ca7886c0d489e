package sshnode

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/engines"
	"github.com/hastack/hastack/internal/node"
)

// Host is what the systemd supervisor needs of a host: commands and files.
// *Node is one; tests use a fake that records argv.
type Host interface {
	Name() string
	Run(ctx context.Context, c node.Cmd) (node.Result, error)
	WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode, owner string) error
}

// The Debian unit of each engine's service comes from the engines'
// descriptors (engines.Unit). Each reads the very files hastack renders at
// their standard paths, so the unit runs what the spec says.

// Systemd keeps a host's services with systemd: the engines under the units
// their Debian packages install, hastack's own agents (the Galera health
// check) under units hastack writes (hastack-NAME.service, enabled, so they
// come back after a reboot like the engines).
type Systemd struct {
	h Host
	// poll is how often Stop looks whether the unit has stopped.
	poll time.Duration
}

var _ node.Supervisor = (*Systemd)(nil)

// NewSystemd returns the systemd supervisor of a host.
func NewSystemd(h Host) *Systemd { return &Systemd{h: h, poll: 250 * time.Millisecond} }

// Unit is the systemd unit that runs a service.
func Unit(service string) string {
	if u := engines.Unit(service); u != "" {
		return u
	}
	return "hastack-" + service + ".service"
}

func (s *Systemd) sh(ctx context.Context, argv ...string) (node.Result, error) {
	return s.h.Run(ctx, node.Cmd{Argv: argv})
}

// Start starts the service's unit unless it runs. For Debian's units the
// argv is not run as such; what it asks for is translated:
//
//   - mariadb with --wsrep-new-cluster bootstraps a new Galera cluster:
//     galera_new_cluster, Debian's way to start the unit so;
//   - --wsrep-start-position is dropped: the unit's galera_recovery finds
//     the position itself before every start;
//   - chronyd -x (a clock shared with other nodes) is refused unless the
//     unit already runs chronyd with -x (a drop-in, as a lab of booted
//     hosts has): Debian's unit cannot be told so, and a chronyd that
//     steers a shared clock disturbs every node on it.
func (s *Systemd) Start(ctx context.Context, svc node.Service) error {
	st, err := s.Status(ctx, svc.Name)
	if err != nil {
		return err
	}
	if st.Running {
		return nil
	}
	unit := Unit(svc.Name)
	if err := s.takeOver(ctx, svc.Name, true); err != nil {
		return err
	}
	var argv []string
	switch {
	case engines.Unit(svc.Name) == "":
		if err := s.writeOwnUnit(ctx, svc); err != nil {
			return err
		}
		argv = []string{"systemctl", "enable", "--now", unit}
	case svc.Name == "mariadb" && slices.Contains(svc.Argv, "--wsrep-new-cluster"):
		argv = []string{"galera_new_cluster"}
	case svc.Name == "chrony" && slices.Contains(svc.Argv, "-x") && !slices.Contains(st.Argv, "-x"):
		return fmt.Errorf("start %s: this host shares its clock with other nodes (chronyd -x), and its %s does not run chronyd with -x: add a drop-in that does (ExecStart=!/usr/sbin/chronyd $DAEMON_OPTS -x), or run such nodes under hastack's supervisor", svc.Name, unit)
	default:
		argv = []string{"systemctl", "start", unit}
	}
	if _, err := s.sh(ctx, argv...); err != nil {
		return fmt.Errorf("start %s: %w%s", svc.Name, err, s.journal(ctx, unit))
	}
	return nil
}

// journal is the end of a unit's log, for a failed start.
func (s *Systemd) journal(ctx context.Context, unit string) string {
	res, err := s.sh(ctx, "journalctl", "--no-pager", "-o", "cat", "-n", "20", "-u", unit)
	if err != nil || len(strings.TrimSpace(string(res.Stdout))) == 0 {
		return ""
	}
	return "\nlast lines of journalctl -u " + unit + ":\n" + strings.TrimRight(string(res.Stdout), "\n")
}

// writeOwnUnit writes the unit of a service of hastack's own, and makes
// systemd read it.
func (s *Systemd) writeOwnUnit(ctx context.Context, svc node.Service) error {
	text, err := UnitFile(svc)
	if err != nil {
		return err
	}
	if _, err := s.sh(ctx, "install", "-d", "-m", "0755", "/var/log/hastack"); err != nil {
		return err
	}
	if err := s.h.WriteFile(ctx, "/etc/systemd/system/"+Unit(svc.Name), []byte(text), 0o644, ""); err != nil {
		return err
	}
	_, err = s.sh(ctx, "systemctl", "daemon-reload")
	return err
}

// UnitFile is the unit hastack writes for a service of its own.
func UnitFile(svc node.Service) (string, error) {
	if len(svc.Argv) == 0 {
		return "", fmt.Errorf("service %s: no command", svc.Name)
	}
	for _, a := range svc.Argv {
		// Status reads the argv back from systemctl show, which joins it
		// with spaces.
		if strings.ContainsAny(a, " \t\n") {
			return "", fmt.Errorf("service %s: argument %q has white space, which hastack's systemd units do not carry", svc.Name, a)
		}
	}
	logFile := svc.LogFile
	if logFile == "" {
		logFile = "/var/log/hastack/" + svc.Name + ".log"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by hastack for its service %s. Do not edit: 'hastack up' rewrites it.\n", svc.Name)
	b.WriteString("[Unit]\nDescription=hastack " + svc.Name + "\nAfter=network-online.target\nWants=network-online.target\n\n")
	b.WriteString("[Service]\n")
	// exec: the start fails when the program cannot be run, as the
	// supervisor's does.
	b.WriteString("Type=exec\n")
	q := make([]string, len(svc.Argv))
	for i, a := range svc.Argv {
		q[i] = unitQuote(a)
	}
	b.WriteString("ExecStart=" + strings.Join(q, " ") + "\n")
	if svc.User != "" && svc.User != "root" {
		b.WriteString("User=" + svc.User + "\n")
	}
	if svc.Dir != "" {
		b.WriteString("WorkingDirectory=" + unitQuote(svc.Dir) + "\n")
	}
	for _, e := range svc.Env {
		b.WriteString("Environment=" + unitQuote(e) + "\n")
	}
	if svc.StopSignal != 0 {
		fmt.Fprintf(&b, "KillSignal=%d\n", int(svc.StopSignal))
	}
	b.WriteString("Restart=on-failure\nRestartSec=2s\n")
	b.WriteString("StandardOutput=append:" + logFile + "\nStandardError=inherit\n\n")
	b.WriteString("[Install]\nWantedBy=multi-user.target\n")
	return b.String(), nil
}

// unitQuote quotes one word for a unit file: double quotes, with the
// escapes systemd reads, and % and $ doubled so that they are not
// specifiers or variables.
func unitQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "%", "%%", "$", "$$")
	return `"` + r.Replace(s) + `"`
}

// Stop stops the unit: systemd sends the unit's stop signal; after timeout
// hastack sends SIGKILL, as its own supervisor does.
func (s *Systemd) Stop(ctx context.Context, name string, timeout time.Duration) error {
	unit := Unit(name)
	st, err := s.Status(ctx, name)
	if err != nil || !st.Running {
		return err
	}
	// A socket left listening would start the unit again.
	if err := s.takeOver(ctx, name, false); err != nil {
		return err
	}
	if _, err := s.sh(ctx, "systemctl", "stop", "--no-block", unit); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	stopped, err := s.waitStopped(ctx, name, timeout)
	if err != nil || stopped {
		return err
	}
	if _, err := s.sh(ctx, "systemctl", "kill", "--signal=SIGKILL", unit); err != nil {
		return fmt.Errorf("stop %s: not stopped after %s, and SIGKILL failed: %w", name, timeout, err)
	}
	if stopped, err := s.waitStopped(ctx, name, 10*time.Second); err != nil || !stopped {
		return fmt.Errorf("stop %s: still running 10s after SIGKILL (%v)", name, err)
	}
	return nil
}

func (s *Systemd) waitStopped(ctx context.Context, name string, timeout time.Duration) (bool, error) {
	end := time.Now().Add(timeout)
	for {
		st, err := s.Status(ctx, name)
		if err != nil {
			return false, err
		}
		if !st.Running {
			return true, nil
		}
		if time.Now().After(end) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("stop %s: %w", name, ctx.Err())
		case <-time.After(s.poll):
		}
	}
}

// Signal sends sig to the unit's main process.
func (s *Systemd) Signal(ctx context.Context, name string, sig syscall.Signal) error {
	st, err := s.Status(ctx, name)
	if err != nil {
		return err
	}
	if !st.Running {
		return fmt.Errorf("signal %s: it is not running", name)
	}
	// --kill-who is the name systemd 252 (Debian 12) knows; later versions
	// keep it beside --kill-whom.
	_, err = s.sh(ctx, "systemctl", "kill", "--kill-who=main", "--signal="+strconv.Itoa(int(sig)), Unit(name))
	if err != nil {
		return fmt.Errorf("signal %s: %w", name, err)
	}
	return nil
}

// showProps are the unit properties a ServiceState is made from.
var showProps = "LoadState,ActiveState,MainPID,ExecMainStartTimestamp,ExecMainExitTimestamp,ExecMainCode,ExecMainStatus,ExecStart"

// Status reports the service's unit. A unit systemd does not know is a
// service that is not running.
func (s *Systemd) Status(ctx context.Context, name string) (node.ServiceState, error) {
	res, err := s.sh(ctx, "systemctl", "show", "--timestamp=unix", "--property="+showProps, Unit(name))
	if err != nil {
		return node.ServiceState{}, fmt.Errorf("status of %s: %w", name, err)
	}
	return parseShow(name, string(res.Stdout)), nil
}

// parseShow reads 'systemctl show' output (KEY=VALUE lines).
func parseShow(name, out string) node.ServiceState {
	p := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			p[k] = v
		}
	}
	st := node.ServiceState{Name: name, Argv: execArgv(p["ExecStart"])}
	if p["LoadState"] != "loaded" {
		return st
	}
	switch p["ActiveState"] {
	case "active", "activating", "reloading", "deactivating":
		// activating covers a start in progress (mariadb syncing from a
		// donor): the process runs, and a second start must not follow.
		st.Running = true
	}
	st.PID, _ = strconv.Atoi(p["MainPID"])
	st.Started = unixTime(p["ExecMainStartTimestamp"])
	if !st.Running {
		st.PID = 0
		st.Exited = unixTime(p["ExecMainExitTimestamp"])
		code, _ := strconv.Atoi(p["ExecMainStatus"])
		switch p["ExecMainCode"] {
		case "2", "3": // killed, dumped: the status is the signal
			st.ExitCode = -1
			st.Signal = syscall.Signal(code).String()
		default:
			st.ExitCode = code
		}
	}
	return st
}

// unixTime reads a --timestamp=unix value (@1700000000); empty or n/a is
// the zero time.
func unixTime(v string) time.Time {
	secs, err := strconv.ParseInt(strings.TrimPrefix(v, "@"), 10, 64)
	if err != nil || !strings.HasPrefix(v, "@") {
		return time.Time{}
	}
	return time.Unix(secs, 0)
}

// execArgv reads argv from an ExecStart property:
// { path=/usr/sbin/x ; argv[]=/usr/sbin/x -a b ; ignore_errors=no ; ... }
func execArgv(v string) []string {
	_, rest, ok := strings.Cut(v, "argv[]=")
	if !ok {
		return nil
	}
	args, _, _ := strings.Cut(rest, " ;")
	return strings.Fields(args)
}

// List reports the engines' units that systemd has loaded and hastack's own
// units, in a fixed order.
func (s *Systemd) List(ctx context.Context) ([]node.ServiceState, error) {
	names := []string{"chrony", "memcached", "mariadb", "rabbitmq", "haproxy", "keepalived"}
	res, err := s.sh(ctx, "systemctl", "list-units", "--all", "--plain", "--no-legend", "hastack-*.service")
	if err != nil {
		return nil, fmt.Errorf("listing hastack's units: %w", err)
	}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			if n, ok := strings.CutPrefix(strings.TrimSuffix(f[0], ".service"), "hastack-"); ok {
				names = append(names, n)
			}
		}
	}
	var out []node.ServiceState
	var errs []error
	for _, n := range names {
		st, err := s.Status(ctx, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Running || !st.Started.IsZero() || engines.Unit(n) == "" {
			out = append(out, st)
		}
	}
	return out, errors.Join(errs...)
}

var _ node.Disabler = (*Systemd)(nil)

// Disable keeps the service's unit from starting at boot (systemctl
// disable), and its sockets too.
func (s *Systemd) Disable(ctx context.Context, name string) error {
	unit := Unit(name)
	if _, err := s.sh(ctx, "systemctl", "disable", "--quiet", unit); err != nil {
		return fmt.Errorf("disable %s: %w", name, err)
	}
	return s.takeOver(ctx, name, false)
}
