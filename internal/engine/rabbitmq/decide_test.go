package rabbitmq

import (
	"errors"
	"strings"
	"testing"

	"github.com/hastack/hastack/internal/plan"
)

func TestDecideFullStart(t *testing.T) {
	all3 := []string{"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"}
	stopped := func(name string, saw ...string) NodeView {
		return NodeView{Name: name, Reachable: true, HasData: true, RunningAtShutdown: saw}
	}
	gone := func(name string) NodeView { return NodeView{Name: name} }
	blank := func(name string) NodeView { return NodeView{Name: name, Reachable: true} }
	for _, tc := range []struct {
		name  string
		views []NodeView
		o     RecoverOptions
		// want is "first force then join" or a refusal's substring.
		want   string
		refuse string
	}{
		{"stopped one after the other: the last first",
			[]NodeView{stopped("ctl1", all3...), stopped("ctl2", "rabbit@ctl2", "rabbit@ctl3"), stopped("ctl3", "rabbit@ctl3")},
			RecoverOptions{}, "ctl3 false [ctl1 ctl2] []", ""},
		{"killed at once: together",
			[]NodeView{stopped("ctl1", all3...), stopped("ctl2", all3...), stopped("ctl3", all3...)},
			RecoverOptions{}, " false [ctl1 ctl2 ctl3] []", ""},
		{"lists unknown: together, as up does",
			[]NodeView{stopped("ctl1"), stopped("ctl2"), stopped("ctl3")},
			RecoverOptions{}, " false [ctl1 ctl2 ctl3] []", ""},
		{"the last to stop is unreachable: refused",
			[]NodeView{stopped("ctl1", all3...), stopped("ctl2", "rabbit@ctl2", "rabbit@ctl3"), gone("ctl3")},
			RecoverOptions{}, "", "ctl1, ctl2 wait at boot for rabbit@ctl3, which they last saw running (ctl3 cannot be reached)"},
		{"the last to stop is unreachable, --yes: the last of the others forced",
			[]NodeView{stopped("ctl1", all3...), stopped("ctl2", "rabbit@ctl2", "rabbit@ctl3"), gone("ctl3")},
			RecoverOptions{Yes: true}, "ctl2 true [ctl1] []", ""},
		{"the last to stop was rebuilt blank, --yes: forced, the blank one joins after",
			[]NodeView{stopped("ctl1", all3...), stopped("ctl2", "rabbit@ctl2", "rabbit@ctl3"), blank("ctl3")},
			RecoverOptions{Yes: true}, "ctl2 true [ctl1] [ctl3]", ""},
		{"a node unreachable that stopped first: no force needed",
			[]NodeView{gone("ctl1"), stopped("ctl2", "rabbit@ctl2", "rabbit@ctl3"), stopped("ctl3", "rabbit@ctl3")},
			RecoverOptions{}, "ctl3 false [ctl2] []", ""},
		{"killed at once, one unreachable: the others wait for it",
			[]NodeView{stopped("ctl1", all3...), stopped("ctl2", all3...), gone("ctl3")},
			RecoverOptions{}, "", "wait at boot for rabbit@ctl3"},
		{"force_boot already set: that node first",
			[]NodeView{stopped("ctl1", all3...), {Name: "ctl2", Reachable: true, HasData: true, RunningAtShutdown: all3, ForceBoot: true}, gone("ctl3")},
			RecoverOptions{}, "ctl2 false [ctl1] []", ""},
		{"--boot-node behind the last to stop: needs --yes",
			[]NodeView{stopped("ctl1", all3...), stopped("ctl2", "rabbit@ctl2", "rabbit@ctl3"), stopped("ctl3", "rabbit@ctl3")},
			RecoverOptions{BootNode: "ctl1"}, "", "--boot-node ctl1: it last saw rabbit@ctl2, rabbit@ctl3 running"},
		{"--boot-node with --yes: forced",
			[]NodeView{stopped("ctl1", all3...), stopped("ctl2", "rabbit@ctl2", "rabbit@ctl3"), stopped("ctl3", "rabbit@ctl3")},
			RecoverOptions{BootNode: "ctl1", Yes: true}, "ctl1 true [ctl2 ctl3] []", ""},
		{"--boot-node that stopped last: no force",
			[]NodeView{stopped("ctl1", all3...), stopped("ctl2", "rabbit@ctl2", "rabbit@ctl3"), stopped("ctl3", "rabbit@ctl3")},
			RecoverOptions{BootNode: "ctl3"}, "ctl3 false [ctl1 ctl2] []", ""},
		{"--boot-node unreachable",
			[]NodeView{stopped("ctl1", all3...), stopped("ctl2", all3...), gone("ctl3")},
			RecoverOptions{BootNode: "ctl3", Yes: true}, "", "--boot-node ctl3 is not a controller that can be reached and holds the cluster's data"},
		{"no data anywhere reachable, one gone",
			[]NodeView{blank("ctl1"), blank("ctl2"), gone("ctl3")},
			RecoverOptions{Yes: true}, "", "no reachable controller holds RabbitMQ data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := DecideFullStart(tc.views, tc.o)
			if tc.refuse != "" {
				var r *plan.Refusal
				if err == nil || !strings.Contains(err.Error(), tc.refuse) || !errors.As(err, &r) || r.Remedy == "" {
					t.Fatalf("got %+v, %v; want a refusal with %q", d, err, tc.refuse)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join([]string{d.First, boolStr(d.Force), "[" + strings.Join(d.Then, " ") + "]", "[" + strings.Join(d.Join, " ") + "]"}, " ")
			if got != tc.want {
				t.Fatalf("got %q (%s), want %q", got, d.Why, tc.want)
			}
			if d.Why == "" {
				t.Error("no reason given")
			}
		})
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestDecideForget(t *testing.T) {
	members := []string{"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"}
	up := func(n string) ForgetView {
		return ForgetView{Name: n, Reachable: true, Running: true, Answers: true, HasData: true}
	}
	for _, tc := range []struct {
		name    string
		views   []ForgetView
		members []string
		forget  []string
		want    string // "via members wipe"
		refuse  string
	}{
		{"unreachable node", []ForgetView{up("ctl1"), up("ctl2"), {Name: "ctl3"}}, members, []string{"ctl3"}, "ctl1 [rabbit@ctl3] []", ""},
		{"by its Erlang name", []ForgetView{up("ctl1"), up("ctl2"), {Name: "ctl3"}}, members, []string{"rabbit@ctl3"}, "ctl1 [rabbit@ctl3] []", ""},
		{"reachable with its broker stopped: forgotten, data moved aside", []ForgetView{{Name: "ctl1", Reachable: true, HasData: true}, up("ctl2"), up("ctl3")}, members, []string{"ctl1"}, "ctl2 [rabbit@ctl1] [ctl1]", ""},
		{"a stray member no longer in the spec", []ForgetView{up("ctl1"), up("ctl2"), up("ctl3")}, append(members, "rabbit@old1"), []string{"rabbit@old1"}, "ctl1 [rabbit@old1] []", ""},
		{"still answers: refused", []ForgetView{up("ctl1"), up("ctl2"), up("ctl3")}, members, []string{"ctl3"}, "", "ctl3 still answers and its broker runs"},
		{"unknown name", []ForgetView{up("ctl1"), up("ctl2"), up("ctl3")}, members, []string{"ctl9"}, "", "neither a controller of the spec nor a member"},
		{"seen running by its peers: refused", []ForgetView{up("ctl1"), up("ctl2"), {Name: "ctl3", SeenRunning: true}}, members, []string{"ctl3"}, "", "ctl3 still answers"},
		{"hung: its process runs, it does not answer, its peers see it stopped", []ForgetView{up("ctl1"), up("ctl2"), {Name: "ctl3", Reachable: true, Running: true, HasData: true}}, members, []string{"ctl3"}, "", "runs on ctl3 but does not answer"},
		{"nothing runs", []ForgetView{{Name: "ctl1", Reachable: true, HasData: true}, {Name: "ctl2", Reachable: true, HasData: true}, {Name: "ctl3"}}, nil, []string{"ctl3"}, "", "no other controller's broker runs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := DecideForget(tc.views, tc.members, tc.forget, false)
			if tc.refuse != "" {
				var r *plan.Refusal
				if err == nil || !strings.Contains(err.Error(), tc.refuse) || !errors.As(err, &r) || r.Remedy == "" {
					t.Fatalf("got %+v, %v; want a refusal with %q", d, err, tc.refuse)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := d.Via + " [" + strings.Join(d.Members, " ") + "] [" + strings.Join(d.Wipe, " ") + "]"
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDecideForgetHungWithYes(t *testing.T) {
	views := []ForgetView{{Name: "ctl1", Reachable: true, Running: true, Answers: true, HasData: true}, {Name: "ctl2", Reachable: true, Running: true, Answers: true, HasData: true}, {Name: "ctl3", Reachable: true, Running: true, HasData: true}}
	d, err := DecideForget(views, []string{"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"}, []string{"ctl3"}, true)
	if err != nil || d.Via != "ctl1" || strings.Join(d.Members, ",") != "rabbit@ctl3" || strings.Join(d.Wipe, ",") != "ctl3" {
		t.Fatalf("got %+v, %v", d, err)
	}
}

func TestQueueRepairs(t *testing.T) {
	running := []string{"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl4"}
	queues := []QueueMembers{
		{Name: "/a", Members: []string{"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"}},
		{Name: "/b", Members: []string{"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl4"}},
	}
	shrink, grow := QueueRepairs(queues, running, []string{"rabbit@ctl3"})
	if strings.Join(shrink, ",") != "rabbit@ctl3" || strings.Join(grow, ",") != "rabbit@ctl4" {
		t.Errorf("shrink %v grow %v, want shrink ctl3, grow ctl4", shrink, grow)
	}
	shrink, grow = QueueRepairs(queues[1:], running, []string{"rabbit@ctl3"})
	if len(shrink)+len(grow) != 0 {
		t.Errorf("complete queue: shrink %v grow %v, want nothing", shrink, grow)
	}
	if shrink, grow = QueueRepairs(nil, running, nil); len(shrink)+len(grow) != 0 {
		t.Errorf("no queues: shrink %v grow %v", shrink, grow)
	}
}

func TestQueuesNotReady(t *testing.T) {
	m := []string{"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"}
	got := QueuesNotReady([]QueueMembers{
		{Name: "/ok", Members: m, Leader: "rabbit@ctl1", Online: m},
		{Name: "/noleader", Members: m, Online: m},
		{Name: "/off", Members: m, Leader: "rabbit@ctl2", Online: m[1:]},
	})
	if strings.Join(got, "; ") != "/noleader (no leader); /off (rabbit@ctl1 offline)" {
		t.Errorf("got %q", got)
	}
}

func TestRaftHasLeader(t *testing.T) {
	// As rabbitmq-queues 3.10 prints it without a terminal.
	out := "Status of quorum queue q on node rabbit@ctl1 ...\n" +
		"\x1b(0x\x1b(B Node Name   \x1b(0x\x1b(B Raft State \x1b(0x\x1b(B Log Index \x1b(0x\x1b(B\n" +
		"\x1b(0x\x1b(B rabbit@ctl1 \x1b(0x\x1b(B follower   \x1b(0x\x1b(B 205       \x1b(0x\x1b(B\n"
	if raftHasLeader(out) {
		t.Error("followers only: a leader found")
	}
	if !raftHasLeader(out + "\x1b(0x\x1b(B rabbit@ctl3 \x1b(0x\x1b(B leader     \x1b(0x\x1b(B 205       \x1b(0x\x1b(B\n") {
		t.Error("leader not found")
	}
	if !raftHasLeader("│ rabbit@ctl3 │ leader │ 205 │") {
		t.Error("leader not found in a box-drawn table")
	}
}
