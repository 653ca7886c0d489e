package drill

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hastack/hastack/internal/node"
)

//go:embed oslo_load.py
var osloLoad []byte

// OsloPackages are the Debian packages the rpc and cache workloads need.
const OsloPackages = "python3-oslo.messaging python3-oslo.cache python3-pymemcache"

const osloDir = "/tmp/hastack-drill"

// Python is Debian's interpreter, which sees the python3-oslo.* packages.
const Python = "/usr/bin/python3"

// osloModules are what the workloads import (a variable for the tests).
var osloModules = "oslo_messaging, oslo_cache, pymemcache"

// OsloCheck says why the OpenStack client libraries cannot run on n, or "".
func OsloCheck(ctx context.Context, n node.Node) string {
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := n.Run(c, node.Cmd{Argv: []string{Python, "-c", "import " + osloModules}}); err != nil {
		return fmt.Sprintf("the OpenStack client libraries do not load on %s (install the Debian packages %s): %v", n.Name(), OsloPackages, firstLine(err.Error()))
	}
	return ""
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// Oslo is the rpc or cache workload: the real oslo.messaging or oslo.cache
// client, configured only from the rendered service file, run on a node
// (where OpenStack's API services would run) through the node interface.
type Oslo struct {
	mode  string
	n     node.Node
	rec   *Recorder
	start time.Time
	stdin *io.PipeWriter
	done  chan struct{}
	lines sync.WaitGroup
	mu    sync.Mutex
	err   error
	errb  bytes.Buffer
	keys  int // cache: how many keys the client set before the baseline
}

// StartOslo copies the script and the service file to n, starts the
// clients and returns once they are set up.
func StartOslo(ctx context.Context, n node.Node, mode string, conf []byte, rec *Recorder, start time.Time) (*Oslo, error) {
	script, cfile := osloDir+"/oslo_load.py", osloDir+"/"+mode+".conf"
	if err := n.WriteFile(ctx, script, osloLoad, 0o755, ""); err != nil {
		return nil, err
	}
	if err := n.WriteFile(ctx, cfile, conf, 0o600, ""); err != nil {
		return nil, err
	}
	o := &Oslo{mode: mode, n: n, rec: rec, start: start, done: make(chan struct{})}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	o.stdin = inW
	go func() {
		defer close(o.done)
		_, err := n.Run(context.WithoutCancel(ctx), node.Cmd{Argv: []string{Python, script, mode, cfile}, Stdin: inR, Stdout: outW, Stderr: &lockedBuf{b: &o.errb, mu: &o.mu}})
		o.mu.Lock()
		o.err = err
		o.mu.Unlock()
		outW.Close()
		inR.Close()
	}()
	ready := make(chan struct{})
	o.lines.Add(1)
	go func() {
		defer o.lines.Done()
		sc := bufio.NewScanner(outR)
		isReady := false
		for sc.Scan() {
			if !isReady && sc.Text() == "READY" {
				isReady = true
				close(ready)
				continue
			}
			o.parse(sc.Text())
		}
		io.Copy(io.Discard, outR)
	}()
	select {
	case <-ready:
		return o, nil
	case <-o.done:
		o.mu.Lock()
		defer o.mu.Unlock()
		return nil, fmt.Errorf("%s workload on %s did not start: %v: %s", mode, n.Name(), o.err, strings.TrimSpace(o.errb.String()))
	case <-time.After(90 * time.Second):
		o.Stop()
		return nil, fmt.Errorf("%s workload on %s: not ready within 90 s", mode, n.Name())
	}
}

type lockedBuf struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<16 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (o *Oslo) at(epoch string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(epoch, 64)
	if err != nil {
		return 0, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).Sub(o.start), true
}

func (o *Oslo) parse(line string) {
	f := strings.Fields(line)
	switch {
	case len(f) == 2 && f[0] == "KEYS":
		if n, err := strconv.Atoi(f[1]); err == nil {
			o.mu.Lock()
			o.keys = n
			o.mu.Unlock()
		}
	case (len(f) == 5 || len(f) == 6) && f[0] == "OP":
		t0, ok0 := o.at(f[1])
		t1, ok1 := o.at(f[2])
		if !ok0 || !ok1 {
			return
		}
		op := Op{Start: t0, End: t1, Outcome: OK}
		if f[3] != "ok" {
			op.Outcome, op.Kind = Failed, f[4]
		} else if f[4] == "miss" {
			op.Kind = "miss"
			if len(f) == 6 {
				op.ID = f[5] // the key that missed
			}
		}
		o.rec.add(op)
	case len(f) == 2 && f[0] == "BLOCKED":
		if t0, ok := o.at(f[1]); ok {
			o.rec.add(Op{Start: t0, End: -1, Outcome: Blocked, Kind: "blocked"})
		}
	}
}

// Stop ends the clients; calls still running are recorded as blocked.
func (o *Oslo) Stop() error {
	io.WriteString(o.stdin, "STOP\n")
	o.stdin.Close()
	select {
	case <-o.done:
	case <-time.After(20 * time.Second):
		return errors.New(o.mode + " workload did not stop within 20 s")
	}
	o.lines.Wait()
	return nil
}

// Record is the workload's record.
func (o *Oslo) Record() WorkloadRecord {
	o.mu.Lock()
	defer o.mu.Unlock()
	return WorkloadRecord{Name: o.mode, Ops: o.rec.Ops(), Keys: o.keys}
}
