package rabbitmq

import "testing"

func TestParseMajor(t *testing.T) {
	for v, want := range map[string]int{"4.0.5-6+deb13u2": 4, "3.10.8-1.1+deb12u2\n": 3, "1:3.10.8-1": 3, "": 0, "x": 0} {
		if got := parseMajor(v); got != want {
			t.Errorf("parseMajor(%q) = %d, want %d", v, got, want)
		}
	}
	if formsTogether([]*facts{{major: 3}, {major: 3}}) {
		t.Error("RabbitMQ 3 blank nodes started together")
	}
	if !formsTogether([]*facts{{major: 4}, {major: 4}, {major: 4}}) {
		t.Error("RabbitMQ 4 blank nodes started one at a time")
	}
	if formsTogether([]*facts{{major: 4}}) {
		t.Error("one node has no one to start with")
	}
}
