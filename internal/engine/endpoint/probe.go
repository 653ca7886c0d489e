package endpoint

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTimeout bounds a probe whose context has no deadline.
const DefaultTimeout = 3 * time.Second

// StatsCSVPath is the CSV export of the stats page: the renderer sets
// 'stats uri /', and HAProxy serves the CSV at the stats URI plus ";csv".
const StatsCSVPath = "/;csv"

// How the probe knows which server takes the writes.
const (
	// ActiveBySessions: the server holds the backend's open connections.
	// With every connection going to one server, this is the writer.
	ActiveBySessions = "sessions"
	// ActiveByOrder: no server holds a connection, so the probe names the
	// one 'balance first' picks for the next connection, the first UP
	// server in configuration order. The stick table may override that
	// pick (it keeps writes where they were after a failed server comes
	// back): ask the admin socket ('show table galera') for the final word.
	ActiveByOrder = "order"
)

// Server is one server of the galera backend as HAProxy sees it.
type Server struct {
	Name string `json:"name"`
	// Status is HAProxy's: UP, DOWN, "UP 1/2" (failing checks, still in
	// use), "DOWN 1/3" (passing checks, not yet in use), MAINT, DRAIN,
	// NOLB, or "no check".
	Status string `json:"status"`
	// Up: HAProxy would send it new connections.
	Up bool `json:"up"`
	// Active: this is the server that takes the writes now (see ActiveBy).
	Active bool `json:"active"`
	// CurrentSessions is the connections open to it now (scur).
	CurrentSessions int `json:"currentSessions"`
	// TotalSessions counts every connection it was given since start.
	TotalSessions int64 `json:"totalSessions"`
	// CheckStatus is the last health check's result (L7OK, L7STS: the
	// agent said no, L4CON: nothing listens on the check port, ...) and
	// CheckCode the agent's HTTP status; LastCheck is HAProxy's text.
	CheckStatus string `json:"checkStatus"`
	CheckCode   int    `json:"checkCode,omitempty"`
	LastCheck   string `json:"lastCheck,omitempty"`
	// SinceChange is how long the server has had its current status.
	SinceChange time.Duration `json:"sinceChangeNs"`
	// Downs counts its UP to DOWN transitions since start.
	Downs int `json:"downs"`
}

// Status is one HAProxy's view of the database endpoint.
type Status struct {
	// Healthy: at least one server is UP, so connections to the endpoint
	// reach a database.
	Healthy bool   `json:"healthy"`
	Problem string `json:"problem,omitempty"`
	// StatsAddress is the stats listener asked.
	StatsAddress string `json:"statsAddress"`
	Backend      string `json:"backend"`
	// Servers are in configuration order, which is 'balance first' order.
	Servers []Server `json:"servers"`
	// Up is how many of the servers are UP.
	Up int `json:"up"`
	// Active names the server that takes the writes, empty when none can;
	// ActiveBy says how the probe knows (ActiveBySessions or ActiveByOrder).
	Active   string `json:"active,omitempty"`
	ActiveBy string `json:"activeBy,omitempty"`
	// Sessions is the backend's open connections in all.
	Sessions int `json:"sessions"`
}

// Probe reads the stats CSV of the HAProxy whose stats listener is at
// statsAddress (host:port, e.g. "10.77.0.11:8404") and reports the galera
// backend (Backend). Which controller holds the VIP is not its business:
// every controller's HAProxy answers for itself.
//
// The returned Status carries a Problem whenever it is not healthy. The
// error is non-nil when HAProxy could not be asked or its answer read.
func Probe(ctx context.Context, statsAddress string) (Status, error) {
	st := Status{StatsAddress: statsAddress, Backend: Backend}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	fail := func(err error) (Status, error) {
		err = fmt.Errorf("haproxy probe %s: %w", statsAddress, err)
		st.Problem = err.Error()
		return st, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+statsAddress+StatsCSVPath, nil)
	if err != nil {
		return fail(err)
	}
	// A client of its own: no proxy from the environment (the stats
	// listener is on the management network, never behind a proxy), no
	// connection kept for a probe that runs now and then.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("stats page answered %s", resp.Status))
	}
	rows, err := ParseStatsCSV(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fail(err)
	}
	st = backendStatus(statsAddress, Backend, rows)
	return st, nil
}

// StatsRow is one line of HAProxy's stats CSV, by column name ("pxname",
// "svname", "status", "scur", ...), so that columns HAProxy adds in later
// versions move nothing.
type StatsRow map[string]string

// ParseStatsCSV reads HAProxy's stats CSV: a header line "# pxname,svname,..."
// then one line per frontend, backend and server.
func ParseStatsCSV(r io.Reader) ([]StatsRow, error) {
	cr := csv.NewReader(r)
	// Rows of frontends, backends and servers have the same width, but
	// tolerate a trailing field more or less rather than fail a probe.
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("stats csv: %w", err)
	}
	if len(header) < 2 || !strings.HasPrefix(header[0], "# ") {
		return nil, fmt.Errorf("stats csv: no '# pxname,...' header: %q", strings.Join(header, ","))
	}
	header[0] = strings.TrimPrefix(header[0], "# ")
	var rows []StatsRow
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("stats csv: %w", err)
		}
		row := make(StatsRow, len(header))
		for i, v := range rec {
			if i < len(header) && header[i] != "" {
				row[header[i]] = v
			}
		}
		rows = append(rows, row)
	}
}

// backendStatus judges one backend from the stats rows.
func backendStatus(statsAddress, backend string, rows []StatsRow) Status {
	st := Status{StatsAddress: statsAddress, Backend: backend}
	found := false
	for _, r := range rows {
		if r["pxname"] != backend {
			continue
		}
		switch r["svname"] {
		case "FRONTEND":
			found = true
		case "BACKEND":
			found = true
			st.Sessions = atoi(r["scur"])
		default:
			s := Server{
				Name:            r["svname"],
				Status:          r["status"],
				CurrentSessions: atoi(r["scur"]),
				TotalSessions:   int64(atoi(r["stot"])),
				CheckStatus:     strings.TrimPrefix(r["check_status"], "* "),
				CheckCode:       atoi(r["check_code"]),
				LastCheck:       r["last_chk"],
				SinceChange:     time.Duration(atoi(r["lastchg"])) * time.Second,
				Downs:           atoi(r["chkdown"]),
			}
			s.Up = strings.HasPrefix(s.Status, "UP") || s.Status == "no check"
			if s.Up {
				st.Up++
			}
			st.Servers = append(st.Servers, s)
		}
	}
	if !found {
		st.Problem = fmt.Sprintf("no proxy %q in HAProxy's statistics: not the hastack configuration?", backend)
		return st
	}

	// The writer: the UP server holding connections (all go to one); else
	// the one 'balance first' would pick next.
	active := -1
	for i, s := range st.Servers {
		if s.Up && s.CurrentSessions > 0 && (active < 0 || s.CurrentSessions > st.Servers[active].CurrentSessions) {
			active = i
		}
	}
	st.ActiveBy = ActiveBySessions
	if active < 0 {
		st.ActiveBy = ActiveByOrder
		for i, s := range st.Servers {
			if s.Up {
				active = i
				break
			}
		}
	}
	if active >= 0 {
		st.Servers[active].Active = true
		st.Active = st.Servers[active].Name
	} else {
		st.ActiveBy = ""
	}

	switch {
	case len(st.Servers) == 0:
		st.Problem = fmt.Sprintf("backend %s has no servers", backend)
	case st.Up == 0:
		var down []string
		for _, s := range st.Servers {
			down = append(down, fmt.Sprintf("%s %s (%s)", s.Name, s.Status, checkText(s)))
		}
		st.Problem = "no database server is UP, the endpoint refuses connections: " + strings.Join(down, ", ")
	default:
		st.Healthy = true
	}
	return st
}

func checkText(s Server) string {
	t := s.CheckStatus
	if s.CheckCode != 0 {
		t += fmt.Sprintf(" %d", s.CheckCode)
	}
	if s.LastCheck != "" {
		t += ": " + s.LastCheck
	}
	return t
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
