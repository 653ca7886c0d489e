package deploy

import (
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/spec"
)

func TestCheckRelease(t *testing.T) {
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "t", Controllers: 3, Computes: 1})
	if err != nil {
		t.Fatal(err)
	}
	c, ps := spec.Parse(data)
	if ps.Err() != nil {
		t.Fatal(ps.Err())
	}
	for _, v := range []string{"12", "13"} {
		if err := checkRelease(c, "ctl1", "debian", v); err != nil {
			t.Errorf("Debian %s refused: %v", v, err)
		}
	}
	for _, bad := range [][2]string{{"debian", "11"}, {"ubuntu", "24.04"}, {"", ""}} {
		err := checkRelease(c, "ctl1", bad[0], bad[1])
		if err == nil || !strings.Contains(err.Error(), "supports Debian 12 and Debian 13") {
			t.Errorf("%v: %v", bad, err)
		}
	}
	c.Spec.RabbitMQ.QueueType = spec.QueueMirrored
	if err := checkRelease(c, "ctl1", "debian", "13"); err == nil || !strings.Contains(err.Error(), "no classic mirrored queues") {
		t.Errorf("mirrored queues on Debian 13: %v", err)
	}
	if err := checkRelease(c, "cmp1", "debian", "13"); err != nil {
		t.Errorf("a compute runs no RabbitMQ: %v", err)
	}
	if err := checkRelease(c, "ctl1", "debian", "12"); err != nil {
		t.Errorf("mirrored queues on Debian 12: %v", err)
	}
}
