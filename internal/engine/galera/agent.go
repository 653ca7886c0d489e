package galera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// The health agent answers HAProxy's check of each Galera node. The endpoint
// renderer configures, for every server of the galera backend,
//
//	option httpchk GET /
//	http-check expect status 200
//	default-server check port <checkPort> inter 1s fall 2 rise 3
//	timeout check 2s
//
// so the agent listens on the node's address at checkPort (default 9200),
// answers GET (and HEAD) on any path, and says 200 only for a node that may
// take writes. It must answer within HAProxy's 2 s check timeout, so it
// gives the database less than that and reports a slow database as a 503
// with a reason, instead of leaving HAProxy to time out without one.

// AgentCheckTimeout bounds one check: below HAProxy's 'timeout check 2s'.
const AgentCheckTimeout = 1500 * time.Millisecond

// SyncedBody is the agent's whole answer when the node may take writes.
const SyncedBody = "Galera node is synced"

// Agent is the http.Handler of the Galera health check.
//
// A node passes only when it is in the Primary component, Synced,
// wsrep_ready=ON and not read_only. A Donor is refused even though
// mariabackup keeps it serving during a transfer: HAProxy sends every write
// to one node, and while the others are Synced the writes are better off
// there than on a node busy streaming the whole database. (A donor is never
// the only node left: a cluster of one has no one to donate to.)
type Agent struct {
	// Options says how to reach the local server. The zero value means the
	// local unix socket (Socket) as root, authenticated by unix_socket: the
	// agent runs as root on the node and needs no password.
	Options ProbeOptions
	// Logger, when set, receives one line each time the verdict changes
	// (and the first verdict), never one per check: HAProxy checks every
	// second from every controller.
	Logger *slog.Logger

	mu   sync.Mutex
	last string // last verdict logged: "" before the first check
}

// RunAgent serves the health check on listenAddr (e.g. "10.77.0.11:9200")
// until ctx is cancelled, then shuts down gracefully. It returns nil after a
// cancellation and the error otherwise.
func RunAgent(ctx context.Context, listenAddr string, o ProbeOptions) error {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return fmt.Errorf("galera health agent: %w", err)
	}
	// Verdict changes go to standard error, which the node's supervisor
	// (or the unit's journal) keeps: the operator's answer to "why did
	// HAProxy take this node out?".
	return (&Agent{Options: o, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}).Serve(ctx, ln)
}

// Serve serves the health check on ln until ctx is cancelled; it closes ln.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler: a,
		// A check is one small request: anything slower is not HAProxy.
		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       2 * time.Second,
		WriteTimeout:      5 * time.Second,
		IdleTimeout:       10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("galera health agent: %w", err)
	case <-ctx.Done():
	}
	// Checks in flight finish within AgentCheckTimeout; give them that.
	sctx, cancel := context.WithTimeout(context.Background(), AgentCheckTimeout+time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("galera health agent: %w", err)
	}
	return nil
}

// ServeHTTP implements http.Handler: 200 with SyncedBody when the node may
// take writes, 503 with the reason otherwise.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), AgentCheckTimeout)
	defer cancel()
	ok, reason := a.Check(ctx)
	a.logVerdict(ok, reason)

	// Never cached, and the connection is closed after the answer: HAProxy
	// opens a new one per check anyway.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Connection", "close")
	if ok {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, SyncedBody)
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "Galera node is not ready for writes: "+reason)
}

// Check probes the local node and says whether it may take writes, and if
// not, why.
func (a *Agent) Check(ctx context.Context) (ok bool, reason string) {
	o := a.Options
	if o.Address == "" && o.Socket == "" {
		o.Socket = Socket
		if o.User == "" {
			o.User = "root"
		}
	}
	st, err := Probe(ctx, o)
	switch {
	case err != nil:
		return false, "cannot ask MariaDB: " + err.Error()
	case !st.Healthy:
		return false, st.Problem
	case st.ReadOnly:
		return false, "read_only=ON: writes would be refused"
	}
	return true, ""
}

func (a *Agent) logVerdict(ok bool, reason string) {
	if a.Logger == nil {
		return
	}
	verdict := "synced"
	if !ok {
		verdict = reason
	}
	a.mu.Lock()
	changed := verdict != a.last
	a.last = verdict
	a.mu.Unlock()
	if !changed {
		return
	}
	if ok {
		a.Logger.Info("galera health: node may take writes")
	} else {
		a.Logger.Warn("galera health: node refused", "reason", reason)
	}
}
