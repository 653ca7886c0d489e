package spec

import (
	"slices"
	"strings"
	"testing"
)

// TestEveryProblemAtOnce: strict-decoding problems (unknown fields, wrong
// types, fields given twice) come with the semantic ones, each with its
// path and line, and a value refused by the strict check is not reported
// a second time as missing.
func TestEveryProblemAtOnce(t *testing.T) {
	const head = "apiVersion: hastack/v1alpha1\nkind: Cluster\nmetadata: {name: mixed}\nspec:\n"
	const nets = "  networks: [{name: management, cidr: 10.1.0.0/24}, {name: provider, cidr: 10.2.0.0/24}]\n"
	const tail = "  ntp: {upstream: [10.1.0.2]}\n  database: {endpoint: {vip: 10.1.0.10}}\n"
	three := "  nodes:\n  - {name: ctl1, role: controller, address: 10.1.0.11}\n  - {name: ctl2, role: controller, address: 10.1.0.12}\n  - {name: ctl3, role: controller, address: 10.1.0.13}\n"
	tests := []struct {
		name string
		doc  string
		want []string // exactly these problems, as "path: message prefix (line N)"
	}{
		{
			name: "issue 17: unknown field, unknown role, shared address",
			doc: head + "  bogusField: 1\n" + nets + "  nodes:\n" +
				"  - {name: ctl1, role: controller, address: 10.1.0.11}\n" +
				"  - {name: ctl2, role: wizard, address: 10.1.0.12}\n" +
				"  - {name: ctl3, role: controller, address: 10.1.0.11}\n" + tail,
			want: []string{
				"spec.bogusField: unknown field|line 5",
				`spec.nodes[1].role: "wizard" is not a role|line 9`,
				"spec.nodes[2].address: duplicate of spec.nodes[0].address|line 10",
			},
		},
		{
			name: "wrong type and a duplicate key beside a semantic error",
			doc:  head + nets + three + tail + "  memcached: {port: eleven}\n  memcached: {}\n  rabbitmq: {queueType: fifo}\n",
			want: []string{
				`spec.memcached.port: must be a whole number, not "eleven"|line 12`,
				"spec.memcached: field given twice|line 13",
				`spec.rabbitmq.queueType: "fifo"|line 14`,
			},
		},
		{
			name: "a refused value is not reported again as missing",
			doc:  head + nets + "  nodes:\n  - {name: ctl1, role: controller, address: [10.1.0.11]}\n" + tail,
			want: []string{"spec.nodes[0].address: must be a string, not a list|line 7"},
		},
		{
			name: "only strict problems",
			doc:  head + nets + three + tail + "  colour: blue\n",
			want: []string{"spec.colour: unknown field|line 12"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, ps := Parse([]byte(tc.doc))
			if c != nil {
				t.Error("a spec with strict-decoding problems returned a cluster")
			}
			errs := ps.Errors()
			var got []string
			for _, p := range errs {
				got = append(got, p.String())
			}
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n  %s", len(errs), len(tc.want), strings.Join(got, "\n  "))
			}
			for _, w := range tc.want {
				prefix, line, _ := strings.Cut(w, "|")
				if !slices.ContainsFunc(got, func(g string) bool {
					return strings.HasPrefix(g, prefix) && strings.HasSuffix(g, "("+line+")")
				}) {
					t.Errorf("missing %q at %s; got:\n  %s", prefix, line, strings.Join(got, "\n  "))
				}
			}
		})
	}
}
