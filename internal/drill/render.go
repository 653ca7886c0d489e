package drill

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the report as JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func intp(p *int) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

// WriteText writes one table row per scenario and workload, then each
// scenario's misses, losses with their evidence, and what 'up' did.
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tNODE\tWORKLOAD\tWINDOW s\tp50/p99/max ms (fault)\tTHROUGHPUT fault/recovery vs baseline\tERRORS\tACKED/CONFIRMED\tLOST\tUNKNOWN (committed)\tDUP\tHEALTHY AFTER s\tUP ACTED\tVERDICT")
	for _, s := range r.Scenarios {
		name := s.Name
		if s.Run > 0 {
			name = fmt.Sprintf("%s #%d", s.Name, s.Run)
		}
		for i, wl := range s.Workloads {
			sc, node, healthy, up, verdict := "", "", "", "", ""
			if i == 0 {
				sc, node, healthy, verdict = name, s.Node, fmt.Sprintf("%.1f", s.HealthyAfterS), s.Verdict
				if !s.Recovered {
					healthy = "NOT"
				}
				up = "no"
				if s.UpActed {
					up = "yes"
				}
			}
			if wl.Skipped != "" {
				fmt.Fprintf(tw, "%s\t%s\t%s\tskipped: %s\t\t\t\t\t\t\t\t%s\t%s\t%s\n", sc, node, wl.Name, wl.Skipped, healthy, up, verdict)
				continue
			}
			win := fmt.Sprintf("%.2f", wl.WindowS)
			if wl.WindowOpen {
				win += "+ (open)"
			}
			if wl.Windows > 1 {
				win += fmt.Sprintf(" (%d, max %.2f)", wl.Windows, wl.MaxWindowS)
			}
			var fault, rec PhaseStats
			for _, p := range wl.Phases {
				switch p.Phase {
				case PhaseFault:
					fault = p
				case PhaseRecovery:
					rec = p
				}
			}
			acked := intp(wl.Acked)
			if wl.Confirmed != nil {
				acked = intp(wl.Confirmed)
			}
			unk := intp(wl.Unknown)
			if wl.UnknownCommitted != nil {
				unk += fmt.Sprintf(" (%d)", *wl.UnknownCommitted)
			}
			var kinds []string
			for k, n := range wl.ByKind {
				kinds = append(kinds, fmt.Sprintf("%s:%d", k, n))
			}
			sort.Strings(kinds)
			errs := fmt.Sprint(wl.Errors)
			if len(kinds) > 0 {
				errs += " " + strings.Join(kinds, ",")
			}
			if wl.Misses != nil {
				errs += fmt.Sprintf("; misses %d", *wl.Misses)
				if wl.KeysMissed != nil && wl.Keys != nil {
					errs += fmt.Sprintf(" (%d of %d keys)", *wl.KeysMissed, *wl.Keys)
				}
				errs += fmt.Sprintf("; worst call %.0f ms", wl.WorstCallMs)
				if wl.ServedAgainS != nil {
					open := ""
					if wl.ServedAgainOpen {
						open = "+"
					}
					errs += fmt.Sprintf("; served again %.1f%s s after the heal", *wl.ServedAgainS, open)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f/%.0f/%.0f\t%.0f%%/%.0f%%\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				sc, node, wl.Name, win, fault.P50Ms, fault.P99Ms, fault.MaxMs, 100*fault.VsBaseline, 100*rec.VsBaseline,
				errs, acked, intp(wl.Lost), unk, intp(wl.Duplicates), healthy, up, verdict)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Scenarios {
		for _, l := range s.Losses {
			fmt.Fprintf(w, "%s on %s: DATA LOST: %s\n", s.Name, s.Node, l)
		}
		for _, m := range s.Misses {
			fmt.Fprintf(w, "%s on %s: target missed: %s\n", s.Name, s.Node, m)
		}
		if s.Error != "" {
			fmt.Fprintf(w, "%s on %s: error: %s\n", s.Name, s.Node, s.Error)
		}
		if s.UpActed {
			fmt.Fprintf(w, "%s on %s: 'hastack up' had to act: %s\n", s.Name, s.Node, strings.Join(s.UpDid, "; "))
		}
	}
	return nil
}

var chartColors = map[string]string{"db": "#1f77b4", "mq": "#2ca02c", "rpc": "#9467bd", "cache": "#8c564b"}

// SVG draws a scenario's timeline: per workload, successful operations per
// second as a line and errors per second as red bars, with the fault, the
// heal and status healthy marked.
func (s ScenarioReport) SVG() string {
	const width, rowH, left, top = 900.0, 90.0, 60.0, 20.0
	var names []string
	for _, w := range s.Workloads {
		if w.Skipped == "" {
			names = append(names, w.Name)
		}
	}
	n := len(s.Series[firstOr(names)].OK)
	if n < 2 {
		n = 2
	}
	height := top + rowH*float64(len(names)) + 30
	x := func(sec float64) float64 { return left + (width-left-10)*sec/float64(n) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`, width, height, width, height)
	for i, name := range names {
		ser := s.Series[name]
		y0 := top + rowH*float64(i)
		base := y0 + rowH - 15
		maxv := 1
		for j := range ser.OK {
			maxv = max(maxv, ser.OK[j], ser.Err[j])
		}
		scale := (rowH - 25) / float64(maxv)
		fmt.Fprintf(&b, `<text x="4" y="%.1f">%s</text><text x="4" y="%.1f" fill="#666">max %d/s</text>`, y0+15, html.EscapeString(name), y0+28, maxv)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ccc"/>`, left, base, width-10, base)
		for j, e := range ser.Err {
			if e > 0 {
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#d62728"><title>%ds: %d errors</title></rect>`, x(float64(j)), base-float64(e)*scale, x(1)-x(0), float64(e)*scale, j, e)
			}
		}
		var pts []string
		for j, v := range ser.OK {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(j)+0.5), base-float64(v)*scale))
		}
		col := chartColors[name]
		if col == "" {
			col = "#333"
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, col, strings.Join(pts, " "))
	}
	bottom := top + rowH*float64(len(names))
	for _, mk := range []struct {
		at    float64
		label string
		col   string
	}{{s.FaultS, "fault", "#d62728"}, {s.HealS, "heal", "#2ca02c"}, {s.HealS + s.HealthyAfterS, "healthy", "#1f77b4"}} {
		if mk.at <= 0 || (mk.label == "healthy" && !s.Recovered) {
			continue
		}
		fmt.Fprintf(&b, `<line class="mark" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4,3"/><text x="%.1f" y="12" fill="%s">%s</text>`, x(mk.at), top-5, x(mk.at), bottom, mk.col, x(mk.at)+2, mk.col, mk.label)
	}
	for sec := 0; sec <= n; sec += max(1, n/10) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#666">%ds</text>`, x(float64(sec)), bottom+15, sec)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func firstOr(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// WriteHTML writes one self-contained page: the text table, and per
// scenario its SVG timeline and its misses and losses. No script, no
// external resource.
func (r Report) WriteHTML(w io.Writer) error {
	var table strings.Builder
	if err := r.WriteText(&table); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>hastack drill report</title>\n<style>body{font-family:sans-serif;margin:1em 2em}pre{font-size:12px;overflow-x:auto}.lost{color:#b00;font-weight:bold}.miss{color:#a60}</style></head><body>\n<h1>hastack drill report</h1>\n")
	fmt.Fprintf(&b, "<pre>%s</pre>\n", html.EscapeString(table.String()))
	for _, s := range r.Scenarios {
		title := s.Name
		if s.Run > 0 {
			title = fmt.Sprintf("%s #%d", s.Name, s.Run)
		}
		fmt.Fprintf(&b, "<section class=\"scenario\"><h2>%s on %s: %s</h2>\n", html.EscapeString(title), html.EscapeString(s.Node), html.EscapeString(s.Verdict))
		b.WriteString(s.SVG())
		b.WriteString("\n<ul>")
		for _, l := range s.FaultLog {
			fmt.Fprintf(&b, "<li>%s</li>", html.EscapeString(l))
		}
		for _, l := range s.Losses {
			fmt.Fprintf(&b, "<li class=\"lost\">data lost: %s</li>", html.EscapeString(l))
		}
		for _, m := range s.Misses {
			fmt.Fprintf(&b, "<li class=\"miss\">target missed: %s</li>", html.EscapeString(m))
		}
		if s.UpActed {
			fmt.Fprintf(&b, "<li>hastack up acted: %s</li>", html.EscapeString(strings.Join(s.UpDid, "; ")))
		}
		b.WriteString("</ul></section>\n")
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
