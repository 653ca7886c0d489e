package check

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText prints the results as a table grouped by node, in report
// order, then the summary line. A result that is not ok gets its detail
// on the line below it.
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCHECK\tSTATUS\tVALUE\tLIMIT")
	last := ""
	for _, x := range r.Results {
		// The node's name starts its group; the rows below it leave the
		// column empty, so the groups stand out without breaking the
		// table's alignment.
		name := ""
		if x.Node != last {
			name, last = x.Node, x.Node
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, x.Check, statusText(x.Status), x.Value, x.Limit)
		if x.Status != OK && x.Detail != "" {
			fmt.Fprintf(tw, "\t\t\t  %s\t\n", x.Detail)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, r.Summary())
	return err
}

// statusText makes failures stand out in a long table.
func statusText(s Status) string {
	if s == Fail {
		return strings.ToUpper(string(s))
	}
	return string(s)
}
