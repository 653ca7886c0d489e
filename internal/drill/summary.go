package drill

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
)

// Figure is the median and the worst of one figure over repeated runs.
type Figure struct {
	Median float64 `json:"median"`
	Worst  float64 `json:"worst"`
}

func figure(xs []float64) Figure {
	if len(xs) == 0 {
		return Figure{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Figure{Median: m, Worst: s[len(s)-1]}
}

// SummaryRow is one scenario's workload over every run of it.
type SummaryRow struct {
	Scenario string `json:"scenario"`
	Workload string `json:"workload"`
	Runs     int    `json:"runs"`
	WindowS  Figure `json:"windowS"` // the longest window of each run
	MaxMs    Figure `json:"maxMs"`
	Lost     int    `json:"lost"` // over every run
	// HealthyAfterS is the scenario's, over the runs that recovered.
	HealthyAfterS Figure `json:"healthyAfterS"`
	NotRecovered  int    `json:"notRecovered"`
}

// Summarize gives, per scenario and workload, the median and the worst over
// the runs (--repeat), in the order they first ran.
func (r Report) Summarize() []SummaryRow {
	type key struct{ s, w string }
	var order []key
	win, mx, healthy := map[key][]float64{}, map[key][]float64{}, map[key][]float64{}
	lost, runs, notRec := map[key]int{}, map[key]int{}, map[key]int{}
	for _, s := range r.Scenarios {
		for _, w := range s.Workloads {
			if w.Skipped != "" {
				continue
			}
			k := key{s.Name, w.Name}
			if runs[k] == 0 {
				order = append(order, k)
			}
			runs[k]++
			win[k] = append(win[k], w.MaxWindowS)
			mx[k] = append(mx[k], w.MaxMs)
			if w.Lost != nil {
				lost[k] += *w.Lost
			}
			if s.Recovered {
				healthy[k] = append(healthy[k], s.HealthyAfterS)
			} else {
				notRec[k]++
			}
		}
	}
	var out []SummaryRow
	for _, k := range order {
		out = append(out, SummaryRow{Scenario: k.s, Workload: k.w, Runs: runs[k], WindowS: figure(win[k]), MaxMs: figure(mx[k]),
			Lost: lost[k], HealthyAfterS: figure(healthy[k]), NotRecovered: notRec[k]})
	}
	return out
}

// WriteSummary writes the medians and the worst over repeated runs.
func (r Report) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tWORKLOAD\tRUNS\tWINDOW s median/worst\tMAX ms median/worst\tLOST (all runs)\tHEALTHY AFTER s median/worst\tNOT RECOVERED")
	for _, s := range r.Summarize() {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f/%.2f\t%.0f/%.0f\t%d\t%.1f/%.1f\t%d\n", s.Scenario, s.Workload, s.Runs, s.WindowS.Median, s.WindowS.Worst,
			s.MaxMs.Median, s.MaxMs.Worst, s.Lost, s.HealthyAfterS.Median, s.HealthyAfterS.Worst, s.NotRecovered)
	}
	return tw.Flush()
}
