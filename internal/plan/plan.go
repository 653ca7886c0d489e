// Package plan is the shape of a deploy: an ordered list of small phases,
// each of which first gathers facts from the nodes and then returns only the
// steps those facts call for. A phase with nothing to do returns no steps,
// which is what makes a second 'hastack up' a quick no-op and '--dry-run'
// an honest per-host plan.
//
// Engine packages build their phases from these types; package deploy
// orders and runs them. Neither knows whether a node is a lab node or a real
// host: they speak node.Node.
package plan

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// Target is what every phase works on.
type Target struct {
	Cluster *spec.Cluster
	// Nodes by spec node name, every node of the spec.
	Nodes   map[string]node.Node
	Secrets secrets.Values
	// SpecPath is the spec's file on this machine; records that must
	// survive a crash of hastack are kept beside it.
	SpecPath string
	// SharedClock is true when the nodes share this machine's clock (the
	// lab): chronyd must then serve time without steering the clock.
	SharedClock bool
	// AgentPath is where hastack's own binary lives on every node, for the
	// agents it runs there (the Galera health check).
	AgentPath string
	// DryRun is set while only planning: phases that verify rather than
	// act must not wait for a state the plan has not made yet.
	DryRun bool
	// Progress prints one line; every line names its host.
	Progress func(phase, host, format string, a ...any)
}

// Node returns the node named name; phases only ask for spec nodes.
func (t *Target) Node(name string) node.Node { return t.Nodes[name] }

// Say prints a progress line.
func (t *Target) Say(phase, host, format string, a ...any) {
	if t.Progress != nil {
		t.Progress(phase, host, format, a...)
	}
}

// Phase is one stage of the deploy.
type Phase struct {
	Name string
	// Plan gathers facts and returns the steps needed; none when the
	// nodes are already as the spec wants them. It changes nothing and
	// does not wait for anything to happen.
	Plan func(ctx context.Context, t *Target) ([]Step, error)
	// Verify, when set, runs after the phase's steps (or when there were
	// none) in a real run, never in a dry run: it waits, within its own
	// deadline, for the state the phase promises, and fails the run when
	// it does not come.
	Verify func(ctx context.Context, t *Target) error
}

// Refusal is a state a phase will not act on by itself: what is wrong and
// what the operator can do. Nothing was changed when a phase refuses.
type Refusal struct {
	Problem string
	Remedy  string
}

func (r *Refusal) Error() string { return r.Problem + ": " + r.Remedy }

// Step is one action on one host.
type Step struct {
	Host string
	// Action says what the step does, for the plan and the progress lines.
	// Never a secret.
	Action string
	// Wave orders steps within a phase: steps of one wave run in
	// parallel; waves run in increasing order. Steps that depend on each
	// other (join Galera nodes one at a time) take successive waves.
	Wave int
	Do   func(ctx context.Context) error
}

// Waves groups steps by wave, in order.
func Waves(steps []Step) [][]Step {
	byWave := map[int][]Step{}
	var waves []int
	for _, s := range steps {
		if _, ok := byWave[s.Wave]; !ok {
			waves = append(waves, s.Wave)
		}
		byWave[s.Wave] = append(byWave[s.Wave], s)
	}
	sort.Ints(waves)
	out := make([][]Step, 0, len(waves))
	for _, w := range waves {
		out = append(out, byWave[w])
	}
	return out
}

// ForEach runs fn on every named node in parallel and joins the errors,
// each carrying its host's name.
func ForEach(ctx context.Context, names []string, fn func(ctx context.Context, name string) error) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx, name); err != nil {
				errs[i] = fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// NodeSteps plans every node with fn in parallel (planning only reads the
// nodes, so one slow host does not make the others wait) and returns the
// steps in the nodes' order, skipping nodes with nothing to do. Errors are
// joined, each carrying its host's name.
func NodeSteps(ctx context.Context, nodes []spec.Node, fn func(ctx context.Context, n spec.Node) (*Step, error)) ([]Step, error) {
	pos := make(map[string]int, len(nodes))
	for i, n := range nodes {
		pos[n.Name] = i
	}
	got := make([]*Step, len(nodes))
	if err := ForEach(ctx, Names(nodes), func(ctx context.Context, name string) error {
		i := pos[name]
		s, err := fn(ctx, nodes[i])
		got[i] = s
		return err
	}); err != nil {
		return nil, err
	}
	var steps []Step
	for _, s := range got {
		if s != nil {
			steps = append(steps, *s)
		}
	}
	return steps, nil
}

// Names lists node names.
func Names(nodes []spec.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.Name
	}
	return out
}

// StaleFiles returns the files whose content, mode or owner on the node
// differs from what they should be.
func StaleFiles(ctx context.Context, n node.Node, files []engine.File) ([]engine.File, error) {
	var stale []engine.File
	for _, f := range files {
		same, err := sameContent(ctx, n, f)
		if err != nil {
			return nil, err
		}
		if !same {
			stale = append(stale, f)
			continue
		}
		ok, err := modeOwnerMatch(ctx, n, f)
		if err != nil {
			return nil, err
		}
		if !ok {
			stale = append(stale, f)
		}
	}
	return stale, nil
}

// bigFile is the size above which a file is compared by its digest on the
// node rather than read back: hastack's own binary (the health agent) is
// megabytes, and reading it from every controller on every 'up' costs more
// than the rest of a no-op run over a slow link.
const bigFile = 64 << 10

// sameContent reports whether the node's file holds exactly f.Content; a
// missing file does not.
func sameContent(ctx context.Context, n node.Node, f engine.File) (bool, error) {
	if len(f.Content) <= bigFile {
		have, err := n.ReadFile(ctx, f.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return err == nil && bytes.Equal(have, f.Content), err
	}
	res, err := n.Run(ctx, node.Cmd{Argv: []string{"sh", "-c", `test ! -e "$1" || sha256sum "$1"`, "sh", f.Path}})
	if err != nil {
		return false, err
	}
	have, _, _ := strings.Cut(strings.TrimSpace(string(res.Stdout)), " ")
	want := sha256.Sum256(f.Content)
	return have == hex.EncodeToString(want[:]), nil
}

func modeOwnerMatch(ctx context.Context, n node.Node, f engine.File) (bool, error) {
	res, err := n.Run(ctx, node.Cmd{Argv: []string{"stat", "-c", "%a %U", f.Path}})
	if err != nil {
		return false, err
	}
	owner := f.Owner
	if owner == "" {
		owner = "root"
	}
	owner, _, _ = strings.Cut(owner, ":")
	want := fmt.Sprintf("%o %s", f.Mode.Perm(), owner)
	return strings.TrimSpace(string(res.Stdout)) == want, nil
}

// WriteFiles writes files to a node.
func WriteFiles(ctx context.Context, n node.Node, files []engine.File) error {
	for _, f := range files {
		if err := n.WriteFile(ctx, f.Path, f.Content, f.Mode, f.Owner); err != nil {
			return err
		}
	}
	return nil
}

// Paths lists the files' paths, for step descriptions.
func Paths(files []engine.File) string {
	p := make([]string, len(files))
	for i, f := range files {
		p[i] = f.Path
	}
	return strings.Join(p, ", ")
}

// Sh runs a command on a node and returns its trimmed standard output.
func Sh(ctx context.Context, n node.Node, argv ...string) (string, error) {
	res, err := n.Run(ctx, node.Cmd{Argv: argv})
	return strings.TrimSpace(string(res.Stdout)), err
}

// ErrNotDone is what a wait that ran out of time wraps (WaitFor,
// WaitUntil), so that a caller can tell it from a check that gave up.
var ErrNotDone = errors.New("not done")

// WaitFor polls check until it reports done, the context ends or the
// deadline passes; the error says what was awaited and the last reason.
func WaitFor(ctx context.Context, what string, timeout time.Duration, check func(ctx context.Context) (done bool, why string)) error {
	return WaitUntil(ctx, what, timeout, func(ctx context.Context) (bool, string, error) {
		done, why := check(ctx)
		return done, why, nil
	})
}

// WaitUntil is WaitFor with a check that can give up at once: a non-nil
// error (the process being awaited has exited, say) ends the wait.
func WaitUntil(ctx context.Context, what string, timeout time.Duration, check func(ctx context.Context) (done bool, why string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	why := ""
	for {
		done, w, err := check(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if done {
			return nil
		}
		if w != "" {
			why = w
		}
		select {
		case <-ctx.Done():
			if why == "" {
				why = "no answer"
			}
			return fmt.Errorf("%s: %w after %s: %s", what, ErrNotDone, timeout, why)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// EnsureDir makes a folder with owner and mode on a node.
func EnsureDir(ctx context.Context, n node.Node, path, owner string, mode fs.FileMode) error {
	args := []string{"install", "-d", "-m", fmt.Sprintf("%o", mode.Perm())}
	if owner != "" {
		u, g, ok := strings.Cut(owner, ":")
		if !ok {
			g = u
		}
		args = append(args, "-o", u, "-g", g)
	}
	_, err := n.Run(ctx, node.Cmd{Argv: append(args, path)})
	return err
}

// EnsureService starts svc on the node, restarting it first when restart
// is true and it runs.
func EnsureService(ctx context.Context, n node.Node, svc node.Service, restart bool) error {
	sv := n.Services()
	if restart {
		if err := sv.Stop(ctx, svc.Name, 60*time.Second); err != nil {
			return err
		}
	}
	return sv.Start(ctx, svc)
}

// Running reports whether a service runs on a node.
func Running(ctx context.Context, n node.Node, name string) (bool, error) {
	st, err := n.Services().Status(ctx, name)
	return st.Running, err
}

// NewerThan reports whether any of the files on the node changed after
// since (a service's start): the running process has not read them. It
// catches a configuration written by an 'up' that failed before it
// restarted the service, which the next 'up' would otherwise never apply.
// A zero since (the supervisor does not know) reports false. A file that
// cannot be examined is an error naming it: skipping the test would
// silently skip the restart.
func NewerThan(ctx context.Context, n node.Node, since time.Time, paths ...string) (bool, error) {
	if since.IsZero() || len(paths) == 0 {
		return false, nil
	}
	res, err := n.Run(ctx, node.Cmd{Argv: append([]string{"stat", "-c", "%Y"}, paths...)})
	if err != nil {
		return false, fmt.Errorf("is %s newer than the running service (started %s)? %w", strings.Join(paths, ", "), since.Format(time.RFC3339), err)
	}
	lines := strings.Fields(string(res.Stdout))
	if len(lines) != len(paths) {
		return false, fmt.Errorf("is %s newer than the running service? stat printed %d time(s) for %d file(s)", strings.Join(paths, ", "), len(lines), len(paths))
	}
	for i, line := range lines {
		sec, err := strconv.ParseInt(line, 10, 64)
		if err != nil {
			return false, fmt.Errorf("modification time of %s: %q is not a number", paths[i], line)
		}
		if sec > since.Unix() {
			return true, nil
		}
	}
	return false, nil
}

// NotReadSince reports whether the service runs with a configuration older
// than its files (see NewerThan): the files were written after it
// started.
func NotReadSince(ctx context.Context, n node.Node, st node.ServiceState, paths ...string) (bool, error) {
	if !st.Running {
		return false, nil
	}
	newer, err := NewerThan(ctx, n, st.Started, paths...)
	if err != nil {
		return false, fmt.Errorf("%s: %s: %w", n.Name(), st.Name, err)
	}
	return newer, nil
}

// SameBut reports whether have and want hold the same lines once the lines
// whose key (the text before '=' or ':', trimmed) starts with one of
// prefixes are dropped from both: a change in those settings alone.
func SameBut(have, want []byte, prefixes ...string) bool {
	keep := func(b []byte) []string {
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			key := strings.TrimSpace(l)
			if i := strings.IndexAny(key, "=:"); i >= 0 {
				key = strings.TrimSpace(key[:i])
			}
			drop := false
			for _, p := range prefixes {
				drop = drop || strings.HasPrefix(key, p)
			}
			if !drop {
				out = append(out, l)
			}
		}
		return out
	}
	return slices.Equal(keep(have), keep(want))
}

// OnlySettingsChanged reports whether every stale file, as the node has
// it, differs from what it should hold only in settings that start with
// one of prefixes (see SameBut). A missing file is a change.
func OnlySettingsChanged(ctx context.Context, n node.Node, stale []engine.File, prefixes ...string) (bool, error) {
	for _, f := range stale {
		have, err := n.ReadFile(ctx, f.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !SameBut(have, f.Content, prefixes...) {
			return false, nil
		}
	}
	return true, nil
}

// WriteKeepingTime writes files as WriteFiles does, each with the
// modification time its earlier copy had: for a change the running
// service need not read (a list of peers it reads only when it starts), so
// that NotReadSince does not take the file for one the service has missed.
func WriteKeepingTime(ctx context.Context, n node.Node, files []engine.File) error {
	for _, f := range files {
		res, err := n.Run(ctx, node.Cmd{Argv: []string{"stat", "-c", "%Y", f.Path}})
		if err != nil {
			return fmt.Errorf("%s: %s: %w", n.Name(), f.Path, err)
		}
		mtime := strings.TrimSpace(string(res.Stdout))
		if err := WriteFiles(ctx, n, []engine.File{f}); err != nil {
			return err
		}
		if _, err := n.Run(ctx, node.Cmd{Argv: []string{"touch", "-m", "-d", "@" + mtime, f.Path}}); err != nil {
			return fmt.Errorf("%s: %s: %w", n.Name(), f.Path, err)
		}
	}
	return nil
}

// Reload sends a running service the signal that makes it read its
// configuration again (HAProxy's master: SIGUSR2; keepalived: SIGHUP), then
// marks paths as read: their modification time is set to a second before
// the service's start, so that NotReadSince (which knows only when the
// service started) does not take them for files it missed.
func Reload(ctx context.Context, n node.Node, st node.ServiceState, sig syscall.Signal, paths ...string) error {
	if err := n.Services().Signal(ctx, st.Name, sig); err != nil {
		return err
	}
	if st.Started.IsZero() {
		return nil
	}
	at := "@" + strconv.FormatInt(st.Started.Add(-time.Second).Unix(), 10)
	if _, err := n.Run(ctx, node.Cmd{Argv: append([]string{"touch", "-m", "-d", at}, paths...)}); err != nil {
		return fmt.Errorf("%s: %s: %w", n.Name(), st.Name, err)
	}
	return nil
}
