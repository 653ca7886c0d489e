package spec

import (
	"reflect"
	"strings"
	"testing"
)

// TestRemoveAndAddNode removes a controller from the example spec and adds
// it back: the result parses to the same cluster, and no comment is lost.
func TestRemoveAndAddNode(t *testing.T) {
	data, err := ExampleYAML(ExampleOptions{Name: "lab", Controllers: 3, Computes: 1, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	// Two controllers cannot run pause_minority; that is the caller's
	// business (validate refuses it), not the edit's.
	data = []byte(strings.Replace(string(data), "partitionHandling: pause_minority", "partitionHandling: autoheal", 1))
	orig, ps := Parse(data)
	if ps.Err() != nil {
		t.Fatal(ps.Err())
	}
	ctl3, _ := orig.Node("ctl3")
	out, err := RemoveNode(data, "ctl3")
	if err != nil {
		t.Fatal(err)
	}
	c, ps := Parse(out)
	if ps.Err() != nil {
		t.Fatalf("after RemoveNode: %v\n%s", ps.Err(), out)
	}
	var names []string
	for _, n := range c.Spec.Nodes {
		names = append(names, n.Name)
	}
	if got := strings.Join(names, ","); got != "ctl1,ctl2,cmp1" {
		t.Errorf("nodes after removing ctl3: %s", got)
	}
	comments := func(b []byte) int { return strings.Count(string(b), "#") }
	if comments(out) != comments(data) {
		t.Errorf("RemoveNode lost comments: %d before, %d after", comments(data), comments(out))
	}
	if removed := len(strings.Split(string(data), "\n")) - len(strings.Split(string(out), "\n")); removed != 6 {
		t.Errorf("RemoveNode removed %d lines, want ctl3's 6:\n%s", removed, out)
	}
	back, err := AddNode(out, ctl3)
	if err != nil {
		t.Fatal(err)
	}
	c, ps = Parse(back)
	if ps.Err() != nil {
		t.Fatalf("after AddNode: %v\n%s", ps.Err(), back)
	}
	got, ok := c.Node("ctl3")
	if !ok || !reflect.DeepEqual(got, ctl3) {
		t.Errorf("ctl3 added back as %+v, want %+v\n%s", got, ctl3, back)
	}
	if last := c.Spec.Nodes[len(c.Spec.Nodes)-1].Name; last != "ctl3" {
		t.Errorf("added node is not last: %s", last)
	}
	if comments(back) != comments(data) {
		t.Errorf("AddNode lost comments")
	}
	if _, err := RemoveNode(data, "ctl9"); err == nil || !strings.Contains(err.Error(), `no node "ctl9"`) {
		t.Errorf("RemoveNode of an unknown node: %v", err)
	}
	flow := strings.Replace(string(data), "  nodes:\n", "  nodes: [{name: x, role: controller, address: 10.77.0.50, interfaces: [{name: eth0, network: management}]}]\n  oldnodes:\n", 1)
	if _, err := RemoveNode([]byte(flow), "x"); err == nil || !strings.Contains(err.Error(), "flow style") {
		t.Errorf("RemoveNode on a flow list: %v", err)
	}
}
