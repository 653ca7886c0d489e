package check

import (
	"fmt"
	"testing"
	"time"
)

// TestCostGrowsLinearly pins down what a check costs as the cluster grows,
// in calls to the nodes (commands, file reads, supervisor queries): linear
// in nodes, and quadratic only in controllers, through the latency matrix's
// C·(C-1) pings. Name resolution is one command per node whatever the
// cluster's size (the N lookups run inside it).
func TestCostGrowsLinearly(t *testing.T) {
	calls := func(controllers, nodes int, deployed bool) (int64, int64) {
		fc := newFakeCluster(t, controllers, nodes-controllers, deployed)
		r := fc.run(t, fc.options())
		if r.Failed() {
			t.Fatalf("%d/%d: failures: %v", controllers, nodes, failing(r))
		}
		return r.Calls, fc.pings.Load()
	}
	for _, deployed := range []bool{false, true} {
		c10, _ := calls(3, 10, deployed)
		c60, _ := calls(3, 60, deployed)
		c110, _ := calls(3, 110, deployed)
		if c110-c60 != c60-c10 {
			t.Errorf("deployed=%v: calls for 10, 60, 110 nodes: %d, %d, %d: not linear", deployed, c10, c60, c110)
		}
		perNode := (c110 - c60) / 50
		t.Logf("deployed=%v: %d calls per node (10 nodes: %d, 110 nodes: %d)", deployed, perNode, c10, c110)

		// Among controllers: the second difference over C = 3, 5, 7 at a
		// fixed node count is exactly that of C·(C-1), 2·2² = 8, and the
		// pings are exactly C·(C-1).
		var f [3]int64
		for i, c := range []int{3, 5, 7} {
			var pings int64
			f[i], pings = calls(c, 60, deployed)
			if pings != int64(c*(c-1)) {
				t.Errorf("%d controllers: %d pings, want %d", c, pings, c*(c-1))
			}
		}
		if d2 := f[2] - 2*f[1] + f[0]; d2 != 8 {
			t.Errorf("deployed=%v: calls for 3, 5, 7 controllers: %v: second difference %d, want 8 (the pings' C·(C-1))", deployed, f, d2)
		}
	}
}

// BenchmarkCheck runs the whole check over the fake transport (deployed,
// every engine answering). calls/op and pings/op are the work the nodes
// see; ns/op is hastack's own cost (parsing, judging, goroutines), and, in
// the rtt=1ms cases, the wall time when every call costs a 1 ms round trip
// (an SSH channel on a LAN) with 32 calls in flight.
//
//	go test -run '^$' -bench . -benchtime 20x ./internal/check/
func BenchmarkCheck(b *testing.B) {
	for _, tc := range []struct {
		controllers, nodes int
		rtt                time.Duration
	}{
		{3, 10, 0}, {3, 50, 0}, {3, 100, 0}, {3, 200, 0},
		{5, 200, 0}, {7, 200, 0}, {9, 200, 0},
		{3, 50, time.Millisecond}, {3, 100, time.Millisecond}, {3, 200, time.Millisecond},
	} {
		name := fmt.Sprintf("controllers=%d/nodes=%d", tc.controllers, tc.nodes)
		if tc.rtt > 0 {
			name += "/rtt=" + tc.rtt.String()
		}
		b.Run(name, func(b *testing.B) {
			fc := newFakeCluster(b, tc.controllers, tc.nodes-tc.controllers, true)
			fc.delay = tc.rtt
			o := fc.options()
			var calls int64
			b.ResetTimer()
			for range b.N {
				r := fc.run(b, o)
				if r.Failed() {
					b.Fatalf("failures: %v", failing(r))
				}
				calls = r.Calls
			}
			b.ReportMetric(float64(calls), "calls/op")
			b.ReportMetric(float64(fc.pings.Load())/float64(b.N), "pings/op")
		})
	}
}
