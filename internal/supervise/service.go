package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hastack/hastack/internal/node"
)

// running reports whether the service's process is alive (not yet reaped).
// Callers hold s.mu.
func (sv *service) running() bool {
	return sv.run != nil && sv.run.exited.IsZero()
}

// state reports the service. Callers hold s.mu.
func (sv *service) state() node.ServiceState {
	r := sv.run
	st := node.ServiceState{Name: sv.def.Name, Argv: sv.def.Argv, Started: r.started}
	if sv.running() {
		st.Running, st.PID = true, r.pid
	} else {
		st.Exited, st.ExitCode, st.Signal = r.exited, r.code, r.signal
	}
	return st
}

// launch is what a service's process is started with.
type launch struct {
	attr      syscall.ProcAttr
	files     []*os.File
	logPath   string
	logOffset int64 // the log's size before this run: its output starts here
}

func (l *launch) close() {
	for _, f := range l.files {
		f.Close()
	}
}

// start starts a service unless it is running, and reports a process that
// dies within the startup window as an error.
func (s *Server) start(ctx context.Context, def node.Service) error {
	s.mu.Lock()
	sv := s.services[def.Name]
	busy := sv != nil && sv.running()
	s.mu.Unlock()
	if busy {
		return nil
	}
	if err := check(def); err != nil {
		return err
	}
	l, err := s.prepare(def)
	if err != nil {
		return err
	}
	defer l.close()

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return fmt.Errorf("start %s: the supervisor is shutting down", def.Name)
	}
	// Checked again: another request may have started it meanwhile.
	if sv = s.services[def.Name]; sv != nil && sv.running() {
		s.mu.Unlock()
		return nil
	}
	pid, err := syscall.ForkExec(def.Argv[0], def.Argv, &l.attr)
	// ETXTBSY: the program was just written, and a process that forked
	// meanwhile still holds the writer's descriptor until its own exec
	// (golang/go#22315; seen when hastack writes its health agent to
	// several nodes at once). It passes within moments.
	for tries := 0; errors.Is(err, syscall.ETXTBSY) && tries < 20; tries++ {
		time.Sleep(50 * time.Millisecond)
		pid, err = syscall.ForkExec(def.Argv[0], def.Argv, &l.attr)
	}
	if err != nil {
		s.mu.Unlock()
		if def.User != "" && errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("start %s: cannot run as user %q: %w", def.Name, def.User, err)
		}
		return fmt.Errorf("start %s: %s: %w", def.Name, def.Argv[0], err)
	}
	if sv == nil {
		sv = &service{}
		s.services[def.Name] = sv
		s.order = append(s.order, def.Name)
	}
	r := &run{pid: pid, started: time.Now(), done: make(chan struct{})}
	sv.def, sv.run = def, r
	s.byPID[pid] = sv
	s.mu.Unlock()
	s.logf("%s started (pid %d): %s", def.Name, pid, strings.Join(def.Argv, " "))

	t := time.NewTimer(s.startup)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return nil // it is started; the caller only stopped waiting for the verdict
	case <-r.done:
	}
	how := fmt.Sprintf("exited with code %d", r.code)
	if r.signal != "" {
		how = "was killed by " + r.signal
	}
	return fmt.Errorf("start %s: %s %s right after starting%s",
		def.Name, def.Argv[0], how, logTail(l.logPath, l.logOffset))
}

// check rejects a definition that cannot work, with a message saying why.
func check(def node.Service) error {
	if def.Name == "" || def.Name == "." || def.Name == ".." || strings.ContainsAny(def.Name, "/\x00") {
		return fmt.Errorf("start: invalid service name %q", def.Name)
	}
	if len(def.Argv) == 0 {
		return fmt.Errorf("start %s: no command", def.Name)
	}
	bin := def.Argv[0]
	if !filepath.IsAbs(bin) {
		return fmt.Errorf("start %s: command %q is not an absolute path", def.Name, bin)
	}
	fi, err := os.Stat(bin)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("start %s: %s does not exist (is its package installed?)", def.Name, bin)
	case err != nil:
		return fmt.Errorf("start %s: %w", def.Name, err)
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("start %s: %s is not an executable file", def.Name, bin)
	}
	if def.Dir != "" {
		if fi, err := os.Stat(def.Dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("start %s: working directory %s does not exist", def.Name, def.Dir)
		}
	}
	for _, kv := range def.Env {
		if !strings.Contains(kv, "=") {
			return fmt.Errorf("start %s: environment entry %q is not KEY=VALUE", def.Name, kv)
		}
	}
	return nil
}

// prepare resolves the user, builds the environment and opens the files
// the process inherits.
func (s *Server) prepare(def node.Service) (*launch, error) {
	l := &launch{}
	l.attr.Dir = def.Dir
	if l.attr.Dir == "" {
		l.attr.Dir = "/"
	}
	// Its own group, so Stop can kill everything the service forked.
	l.attr.Sys = &syscall.SysProcAttr{Setpgid: true}

	home, uname := "/", def.User
	if def.User == "" {
		// Runs as we do; HOME and USER are still ours to set.
		if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil {
			home, uname = u.HomeDir, u.Username
		} else if os.Getuid() == 0 {
			home, uname = "/root", "root"
		}
	} else {
		u, err := lookupUser(def.User)
		if err != nil {
			return nil, fmt.Errorf("start %s: unknown user %q", def.Name, def.User)
		}
		cred, err := credential(u)
		if err != nil {
			return nil, fmt.Errorf("start %s: user %q: %w", def.Name, def.User, err)
		}
		l.attr.Sys.Credential = cred
		home, uname = u.HomeDir, u.Username
	}
	l.attr.Env = mergeEnv(s.opts.BaseEnv, []string{"HOME=" + home, "USER=" + uname, "LOGNAME=" + uname}, def.Env)

	l.logPath = def.LogFile
	if l.logPath == "" {
		l.logPath = filepath.Join(s.opts.LogDir, def.Name+".log")
	}
	if err := os.MkdirAll(filepath.Dir(l.logPath), 0o755); err != nil {
		return nil, fmt.Errorf("start %s: log folder: %w", def.Name, err)
	}
	logf, err := os.OpenFile(l.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: log file: %w", def.Name, err)
	}
	l.files = append(l.files, logf)
	if l.logOffset, err = logf.Seek(0, io.SeekEnd); err != nil {
		l.close()
		return nil, fmt.Errorf("start %s: log file: %w", def.Name, err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		l.close()
		return nil, fmt.Errorf("start %s: %w", def.Name, err)
	}
	l.files = append(l.files, null)
	l.attr.Files = []uintptr{null.Fd(), logf.Fd(), logf.Fd()}
	return l, nil
}

// lookupUser finds a user by name, or by uid when given digits.
func lookupUser(name string) (*user.User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			return user.LookupId(name)
		}
	}
	return u, err
}

// credential is what the process runs as: the user's uid, primary gid and
// supplementary groups. Nil when that is already us and we are not root,
// because only root may set the groups even to what they already are.
func credential(u *user.User) (*syscall.Credential, error) {
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid %q is not numeric", u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid %q is not numeric", u.Gid)
	}
	if os.Getuid() != 0 && int(uid) == os.Getuid() {
		return nil, nil
	}
	c := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	// A group database that cannot be read leaves just the primary group,
	// which is what most services need.
	ids, _ := u.GroupIds()
	for _, id := range ids {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil {
			c.Groups = append(c.Groups, uint32(g))
		}
	}
	return c, nil
}

// mergeEnv concatenates KEY=VALUE lists; a later KEY replaces an earlier
// one in place.
func mergeEnv(lists ...[]string) []string {
	var out []string
	at := map[string]int{}
	for _, list := range lists {
		for _, kv := range list {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := at[k]; ok {
				out[i] = kv
				continue
			}
			at[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// logTail is the end of what a run wrote to its log, for an error message.
func logTail(path string, from int64) string {
	const maxBytes, maxLines = 4096, 20
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	from = max(from, fi.Size()-maxBytes)
	data, _ := io.ReadAll(io.NewSectionReader(f, from, fi.Size()-from))
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return fmt.Sprintf("; it wrote nothing to %s", path)
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return fmt.Sprintf("; last output in %s:\n%s", path, strings.Join(lines, "\n"))
}

// restart starts a service again from its recorded definition.
func (s *Server) restart(ctx context.Context, name string) error {
	s.mu.Lock()
	sv := s.services[name]
	var def node.Service
	if sv != nil {
		def = sv.def
	}
	s.mu.Unlock()
	if sv == nil {
		return fmt.Errorf("restart %s: the supervisor has never started it", name)
	}
	return s.start(ctx, def)
}

// stop sends the stop signal, waits up to timeout for the process to exit,
// then SIGKILLs its process group.
func (s *Server) stop(ctx context.Context, name string, timeout time.Duration) error {
	s.mu.Lock()
	sv := s.services[name]
	if sv == nil || !sv.running() {
		s.mu.Unlock()
		return nil
	}
	r := sv.run
	sig := sv.def.StopSignal
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	err := syscall.Kill(r.pid, sig)
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("stop %s: sending %s to pid %d: %w", name, signalName(sig), r.pid, err)
	}
	s.logf("%s: sent %s to pid %d", name, signalName(sig), r.pid)

	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: gave up waiting for pid %d to exit after %s: %w", name, r.pid, signalName(sig), ctx.Err())
	case <-t.C:
	}

	s.mu.Lock()
	if r.exited.IsZero() {
		s.logf("%s: still running after %v; sending SIGKILL to its process group", name, timeout)
		syscall.Kill(-r.pid, syscall.SIGKILL)
	}
	s.mu.Unlock()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: pid %d survived SIGKILL: %w", name, r.pid, ctx.Err())
	}
}

// signal sends sig to a running service's main process.
func (s *Server) signal(name string, sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sv := s.services[name]
	if sv == nil || !sv.running() {
		return fmt.Errorf("signal %s: the service is not running", name)
	}
	if err := syscall.Kill(sv.run.pid, sig); err != nil {
		return fmt.Errorf("signal %s: sending %s to pid %d: %w", name, signalName(sig), sv.run.pid, err)
	}
	return nil
}

func (s *Server) status(name string) node.ServiceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv := s.services[name]; sv != nil {
		return sv.state()
	}
	return node.ServiceState{Name: name}
}

func (s *Server) list() []node.ServiceState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]node.ServiceState, 0, len(s.order))
	for _, name := range s.order {
		out = append(out, s.services[name].state())
	}
	return out
}

func (s *Server) definitions() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, len(s.order))
	for _, name := range s.order {
		sv := s.services[name]
		out = append(out, Record{Service: sv.def, State: sv.state()})
	}
	return out
}
