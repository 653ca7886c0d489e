package memcached

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds a probe whose context has no deadline. memcached
// answers 'stats' from memory in microseconds; one that takes seconds is as
// good as down for the API workers that wait on it.
const DefaultTimeout = 2 * time.Second

// Stats is what one memcached says of itself through the text protocol's
// 'stats' and 'stats settings' commands.
type Stats struct {
	// Healthy: the instance answered. memcached has no degraded state worth
	// failing over for; a full cache evicts, which the counters show.
	Healthy bool `json:"healthy"`
	// Problem says why the instance is not healthy; empty when it is.
	Problem string `json:"problem,omitempty"`
	Address string `json:"address"`

	Version         string `json:"version"`
	UptimeSeconds   int64  `json:"uptimeSeconds"`
	CurrItems       int64  `json:"currItems"`
	Evictions       int64  `json:"evictions"`       // items dropped to make room: the cache is too small
	CurrConnections int64  `json:"currConnections"` // open client connections now
	MaxConnections  int64  `json:"maxConnections"`  // the -c limit ('stats settings' maxconns)
	// RejectedConnections counts clients turned away at MaxConnections
	// since start: API workers that got no cache at all.
	RejectedConnections int64 `json:"rejectedConnections"`
	Bytes               int64 `json:"bytes"`         // memory used by items
	LimitMaxBytes       int64 `json:"limitMaxBytes"` // the -m limit, in bytes
}

// Probe asks the memcached at address (host:port) for 'stats' and 'stats
// settings' over one connection.
//
// The returned Stats carries a Problem whenever it is not healthy. The error
// is non-nil when the instance could not be asked (down, not memcached,
// timed out); a caller that only reports may read Stats alone.
func Probe(ctx context.Context, address string) (Stats, error) {
	st := Stats{Address: address}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	stats, settings, err := ask(ctx, address)
	if err != nil {
		err = fmt.Errorf("memcached probe %s: %w", address, err)
		st.Problem = err.Error()
		return st, err
	}
	st = statsFrom(address, stats, settings)
	return st, nil
}

func ask(ctx context.Context, address string) (stats, settings map[string]string, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	// The end of ctx (its deadline, which Probe always sets, or a cancel)
	// unblocks any read or write in flight. Done this way rather than with
	// conn.SetDeadline(deadline), the I/O error always comes after ctx.Err
	// is set, so a timeout always reads as one.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	// Both commands in one write: memcached answers them in order.
	if _, err := conn.Write([]byte("stats\r\nstats settings\r\n")); err != nil {
		return nil, nil, ctxErr(ctx, err)
	}
	r := bufio.NewReader(conn)
	if stats, err = parseStats(r); err != nil {
		return nil, nil, ctxErr(ctx, fmt.Errorf("stats: %w", err))
	}
	if settings, err = parseStats(r); err != nil {
		return nil, nil, ctxErr(ctx, fmt.Errorf("stats settings: %w", err))
	}
	return stats, settings, nil
}

// ctxErr prefers the context's error to the I/O error it caused, so that a
// timeout reads as one.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

// parseStats reads one answer to a stats command: "STAT <name> <value>"
// lines up to "END". Values may contain spaces (e.g. 'stats settings'
// shows some of them so); the name never does.
func parseStats(r *bufio.Reader) (map[string]string, error) {
	out := map[string]string{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "END":
			return out, nil
		case strings.HasPrefix(line, "STAT "):
			name, value, _ := strings.Cut(line[len("STAT "):], " ")
			out[name] = value
		case line == "ERROR", strings.HasPrefix(line, "CLIENT_ERROR"), strings.HasPrefix(line, "SERVER_ERROR"):
			return nil, fmt.Errorf("server answered %q", line)
		default:
			return nil, fmt.Errorf("not a memcached stats line: %q", truncate(line, 80))
		}
	}
}

func statsFrom(address string, stats, settings map[string]string) Stats {
	num := func(m map[string]string, k string) int64 {
		v, _ := strconv.ParseInt(m[k], 10, 64)
		return v
	}
	st := Stats{
		Healthy:             true,
		Address:             address,
		Version:             stats["version"],
		UptimeSeconds:       num(stats, "uptime"),
		CurrItems:           num(stats, "curr_items"),
		Evictions:           num(stats, "evictions"),
		CurrConnections:     num(stats, "curr_connections"),
		MaxConnections:      num(settings, "maxconns"),
		RejectedConnections: num(stats, "rejected_connections"),
		Bytes:               num(stats, "bytes"),
		LimitMaxBytes:       num(stats, "limit_maxbytes"),
	}
	if st.Version == "" {
		st.Healthy = false
		st.Problem = "answered 'stats' without a version: not a memcached server?"
	}
	return st
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
