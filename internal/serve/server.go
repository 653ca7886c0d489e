package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hastack/hastack/internal/status"
)

// Defaults of 'hastack serve'.
const (
	DefaultListen = "127.0.0.1:9105"
	// DefaultMaxAge: concurrent and back-to-back scrapes within this share
	// one probe round.
	DefaultMaxAge = time.Second
	// DefaultTimeout bounds a probe round: a frozen or unreachable node
	// is reported as down when it has not answered by then. Below
	// Prometheus' default scrape_timeout (10 s).
	DefaultTimeout = 5 * time.Second
)

// Options shape a server.
type Options struct {
	Cluster string
	Collect CollectFunc
	MaxAge  time.Duration
	Timeout time.Duration
	// Refresh is how often the page reloads itself.
	Refresh time.Duration
}

// Server answers /metrics, /status and /.
type Server struct {
	o      Options
	prober *Prober
	mux    *http.ServeMux
}

// New makes a server; nothing listens yet.
func New(o Options) *Server {
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Refresh <= 0 {
		o.Refresh = 2 * time.Second
	}
	s := &Server{o: o, prober: NewProber(o.Collect, o.MaxAge, o.Timeout), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /metrics", s.metrics)
	s.mux.HandleFunc("GET /status", s.status)
	s.mux.HandleFunc("GET /{$}", s.page)
	return s
}

// Prober is the server's shared prober.
func (s *Server) Prober() *Prober { return s.prober }

// ServeHTTP serves the handlers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// round gets a shared round within the request's deadline: the round's
// own deadline plus a margin, so a request is always answered.
func (s *Server) round(r *http.Request) (Round, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.o.Timeout+2*time.Second)
	defer cancel()
	return s.prober.Get(ctx)
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	rd, err := s.round(r)
	if err != nil {
		http.Error(w, "probe: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(newCollector(s.o.Cluster, rd, time.Since(rd.At).Seconds(), s.prober.Rounds())); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).ServeHTTP(w, r)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	rd, err := s.round(r)
	if err != nil {
		http.Error(w, "probe: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rd.Report)
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	rd, err := s.round(r)
	if err != nil {
		http.Error(w, "probe: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	var text strings.Builder
	_ = rd.Report.WriteText(&text, s.o.Cluster)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// No script, font or style from anywhere else.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_ = pageTemplate.Execute(w, pageData{
		Cluster: s.o.Cluster,
		Refresh: int(s.o.Refresh.Seconds()),
		Verdict: rd.Report.Verdict,
		At:      rd.At.UTC().Format(time.RFC3339),
		Tables:  tables(text.String()),
	})
}

// Listen opens addr, with a message that says what to do when it is taken.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		_, port, _ := net.SplitHostPort(addr)
		return nil, fmt.Errorf("cannot listen on %s: the address is in use by another process (see which: ss -ltnp 'sport = :%s'); stop it or pass --listen with another address", addr, port)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	return l, nil
}

// Serve serves on l until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: s.o.Timeout + 10*time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		return nil
	}
}

// table is one block of the status text: a header row and its rows, or
// free lines.
type table struct {
	Header []string
	Rows   [][]string
	Lines  []string
}

// tables splits the status text (tab-aligned blocks separated by blank
// lines) into tables for the page, so the page shows exactly what
// 'hastack status' shows.
func tables(text string) []table {
	var out []table
	for _, block := range strings.Split(strings.TrimSpace(text), "\n\n") {
		lines := strings.Split(block, "\n")
		var t table
		if len(lines) > 0 && isHeader(lines[0]) {
			t.Header = strings.Fields(lines[0])
			for _, l := range lines[1:] {
				cells := splitCells(l, len(t.Header))
				if cells == nil {
					t.Lines = append(t.Lines, l)
					continue
				}
				t.Rows = append(t.Rows, cells)
			}
		} else {
			t.Lines = lines
		}
		out = append(out, t)
	}
	return out
}

func isHeader(l string) bool {
	f := strings.Fields(l)
	return len(f) > 1 && strings.ToUpper(l) == l && !strings.HasPrefix(l, " ")
}

// splitCells splits a tabwriter row (columns separated by two or more
// spaces) into n cells; nil when it is not a row of the table.
func splitCells(l string, n int) []string {
	var cells []string
	for _, c := range strings.Split(l, "  ") {
		if c = strings.TrimSpace(c); c != "" {
			cells = append(cells, c)
		}
	}
	if len(cells) < n {
		return nil
	}
	if len(cells) > n {
		cells = append(cells[:n-1], strings.Join(cells[n-1:], "  "))
	}
	return cells
}

type pageData struct {
	Cluster string
	Refresh int
	Verdict string
	At      string
	Tables  []table
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>hastack {{.Cluster}}: {{.Verdict}}</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; }
.healthy { color: #176f2c; } .degraded { color: #9a6a00; } .not.serving, .not-serving { color: #b00020; }
table { border-collapse: collapse; margin: 0 0 1.2em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; font-family: monospace; }
th { background: #f0f0f0; }
td.bad { color: #b00020; font-weight: bold; }
p.line { font-family: monospace; margin: 0.2em 0; white-space: pre-wrap; }
</style>
</head>
<body>
<h1>hastack cluster {{.Cluster}}: <span id="verdict" class="{{.Verdict}}">{{.Verdict}}</span></h1>
<p>probed at {{.At}}; this page reloads every {{.Refresh}} s; <a href="status">status JSON</a>, <a href="metrics">metrics</a></p>
{{range .Tables}}{{if .Header}}<table>
<tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td{{if eq . "NO"}} class="bad"{{end}}>{{.}}</td>{{end}}</tr>
{{end}}</table>
{{end}}{{range .Lines}}<p class="line">{{.}}</p>
{{end}}{{end}}</body>
</html>
`))

// Collector adapts status.Collect for the server.
func Collector(t status.Target) CollectFunc {
	return func(ctx context.Context) status.Report { return status.Collect(ctx, t) }
}
