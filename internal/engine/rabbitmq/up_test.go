package rabbitmq

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hastack/hastack/internal/deploy"
	"github.com/hastack/hastack/internal/engine"
	"github.com/hastack/hastack/internal/lab"
	"github.com/hastack/hastack/internal/node"
	"github.com/hastack/hastack/internal/plan"
	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

func TestMain(m *testing.M) {
	// The test binary is the lab nodes' init in the integration test.
	lab.MaybeRunInit()
	os.Exit(m.Run())
}

// runSteps runs a phase's steps through deploy's own runner (waves in
// order, a wave's steps in parallel), stopping the test at a failure.
func runSteps(t *testing.T, ctx context.Context, steps []plan.Step) {
	t.Helper()
	ph := plan.Phase{Name: "rabbitmq", Plan: func(context.Context, *plan.Target) ([]plan.Step, error) { return steps, nil }}
	if _, err := deploy.Run(ctx, &plan.Target{}, []plan.Phase{ph}, deploy.Options{Out: testWriter{t}}); err != nil {
		t.Fatal(err)
	}
}

// testWriter logs each line deploy prints.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func planSteps(t *testing.T, ctx context.Context, tg *plan.Target) []plan.Step {
	t.Helper()
	steps, err := Phase().Plan(ctx, tg)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	for _, s := range steps {
		t.Logf("planned: wave %d: %s: %s", s.Wave, s.Host, s.Action)
	}
	return steps
}

func TestIntegrationRabbitMQPhase(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: makes a lab of 3 controllers (namespaces, bridges) and boots a real RabbitMQ cluster; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root (run 'bash scripts/test' as root, or use -short)")
	}
	ctx := context.Background()

	y, err := spec.ExampleYAML(spec.ExampleOptions{Name: "rmqtest", Controllers: 3, Computes: 0, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	ys := strings.ReplaceAll(strings.ReplaceAll(string(y), "10.77.", "10.231."), "10.78.", "10.232.")
	c, ps := spec.Parse([]byte(ys))
	if err := ps.Err(); err != nil {
		t.Fatal(err)
	}
	if err := lab.Down(context.Background(), lab.Options{StateDir: t.TempDir(), Prefix: "hq", Log: t.Logf}); err != nil {
		t.Fatalf("removing what an earlier run left under lab prefix hq: %v", err)
	}
	lo := lab.Options{StateDir: t.TempDir(), Prefix: "hq", Log: t.Logf}
	t.Cleanup(func() {
		if err := lab.Down(context.Background(), lo); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	l, err := lab.Up(ctx, c, "", lo)
	if err != nil {
		t.Fatal(err)
	}
	store, err := secrets.Open(filepath.Join(t.TempDir(), "rmqtest.secrets.yaml"), "rmqtest")
	if err != nil {
		t.Fatal(err)
	}
	store.Set(store.Generate(secrets.Names()...))
	tg := &plan.Target{Cluster: c, Nodes: map[string]node.Node{}, Secrets: store.Values(), SharedClock: true,
		Progress: func(phase, host, format string, a ...any) {
			t.Logf("[%s] %s: %s", phase, host, fmt.Sprintf(format, a...))
		}}
	for _, n := range c.Spec.Nodes {
		nd, err := l.Node(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		tg.Nodes[n.Name] = nd
	}
	ctls := c.Controllers()
	r := c.Spec.RabbitMQ
	admin := func(n spec.Node) *mgmt {
		return newMgmt(n.Name, n.Address, r.ManagementPort, AdminUser, store.Get(secrets.RabbitAdminPassword))
	}

	// A fresh lab: everything to do, the first controller first.
	t0 := time.Now()
	steps := planSteps(t, ctx, tg)
	if len(steps) == 0 {
		t.Fatal("first plan on a fresh lab has no steps")
	}
	runSteps(t, ctx, steps)
	t.Logf("cluster formed in %s", time.Since(t0).Round(time.Millisecond))

	checkCluster := func(t *testing.T) {
		t.Helper()
		for _, n := range ctls {
			members, err := admin(n).nodes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(members) != len(ctls) {
				t.Errorf("%s sees %d members, want %d: %+v", n.Name, len(members), len(ctls), members)
			}
			for _, m := range members {
				if !m.Running || len(m.Partitions) > 0 {
					t.Errorf("%s sees %+v, want running without partitions", n.Name, m)
				}
			}
		}
	}
	checkCluster(t)

	api := admin(ctls[0])
	if _, found, err := api.user(ctx, "guest"); err != nil || found {
		t.Errorf("guest user: found %v, %v; want absent", found, err)
	}
	ctl1 := net.JoinHostPort(ctls[0].Address, fmt.Sprint(r.Port))
	if err := amqpLogin(ctx, ctl1, r.User, store.Get(secrets.RabbitServicePassword), r.VHost); err != nil {
		t.Errorf("AMQP login as %s on vhost %s: %v", r.User, r.VHost, err)
	}
	if err := amqpLogin(ctx, ctl1, r.User, "wrong", r.VHost); err == nil {
		t.Errorf("AMQP login as %s with a wrong password succeeded", r.User)
	}
	if err := amqpLogin(ctx, ctl1, r.User, store.Get(secrets.RabbitServicePassword), "/not-a-vhost"); err == nil {
		t.Errorf("AMQP login as %s opened a vhost it has no permissions on", r.User)
	}
	if err := amqpLogin(ctx, ctl1, "guest", "guest", r.VHost); err == nil {
		t.Error("AMQP login as guest/guest succeeded")
	}
	if p, found, err := api.permissions(ctx, r.VHost, r.User); err != nil || !found || p.Configure != ".*" || p.Write != ".*" || p.Read != ".*" {
		t.Errorf("permissions of %s on %s: %+v found %v, %v", r.User, r.VHost, p, found, err)
	}
	// The management API is for hastack's administrator only.
	svc := newMgmt("ctl1", ctls[0].Address, r.ManagementPort, r.User, store.Get(secrets.RabbitServicePassword))
	if err := svc.call(ctx, http.MethodGet, "/api/whoami", nil, nil); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("management API as %s: %v, want 401", r.User, err)
	}

	// A second plan on a healthy cluster has nothing to do.
	if steps := planSteps(t, ctx, tg); len(steps) != 0 {
		t.Fatalf("second plan: %d steps, want none", len(steps))
	}

	// A broker killed: the plan restarts that node, and only it.
	ctl2 := tg.Node("ctl2")
	if err := ctl2.Services().Signal(ctx, ServiceName, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := plan.WaitFor(ctx, "rabbitmq on ctl2 reaped", 30*time.Second, func(ctx context.Context) (bool, string) {
		running, err := plan.Running(ctx, ctl2, ServiceName)
		return err == nil && !running, fmt.Sprint(err)
	}); err != nil {
		t.Fatal(err)
	}
	steps = planSteps(t, ctx, tg)
	started := false
	for _, s := range steps {
		if s.Host != "ctl2" {
			t.Errorf("after killing ctl2's broker the plan has a step on %s: %s", s.Host, s.Action)
		}
		started = started || strings.HasPrefix(s.Action, "start rabbitmq-server")
	}
	if !started {
		t.Fatalf("after killing ctl2's broker the plan does not start it: %+v", steps)
	}
	t0 = time.Now()
	runSteps(t, ctx, steps)
	t.Logf("ctl2 back in the cluster in %s", time.Since(t0).Round(time.Millisecond))
	checkCluster(t)
	if steps := planSteps(t, ctx, tg); len(steps) != 0 {
		t.Fatalf("plan after the restart: %d steps, want none", len(steps))
	}

	// Changed by hand through the API: guest back, the OpenStack user's
	// write permission gone. One step mends both, with no restart.
	put := func(path, body string) {
		t.Helper()
		if err := api.call(ctx, http.MethodPut, path, []byte(body), nil); err != nil {
			t.Fatal(err)
		}
	}
	put("/api/users/guest", `{"password":"guest","tags":"administrator"}`)
	put("/api/permissions/%2F/"+r.User, `{"configure":".*","write":"^$","read":".*"}`)
	steps = planSteps(t, ctx, tg)
	if len(steps) != 1 || !strings.Contains(steps[0].Action, fixGuest) || !strings.Contains(steps[0].Action, "set the permissions of user "+r.User) {
		t.Fatalf("plan after changes by hand: %d steps, want one that deletes guest and resets the permissions", len(steps))
	}
	runSteps(t, ctx, steps)
	if err := amqpLogin(ctx, ctl1, "guest", "guest", r.VHost); err == nil {
		t.Error("AMQP login as guest/guest succeeded after the fix")
	}
	if steps := planSteps(t, ctx, tg); len(steps) != 0 {
		t.Fatalf("plan after the fix: %d steps, want none", len(steps))
	}

	// A broker paused (its application stopped, its Erlang node up), as
	// pause_minority leaves one that did not resume after a partition:
	// the plan starts its application, after checking from it that it
	// reaches the majority, instead of waiting for a boot that never
	// comes. ctl1 started first, long enough ago not to be taken for a
	// broker still booting.
	ctl1Node := tg.Node("ctl1")
	if st, err := ctl1Node.Services().Status(ctx, ServiceName); err != nil {
		t.Fatal(err)
	} else if wait := bootGrace - time.Since(st.Started); wait > 0 {
		time.Sleep(wait)
	}
	if _, err := ctl1Node.Run(ctx, node.Cmd{Argv: []string{"rabbitmqctl", "stop_app"}}); err != nil {
		t.Fatal(err)
	}
	steps = planSteps(t, ctx, tg)
	if len(steps) != 2 || steps[0].Host != "ctl1" || !strings.HasPrefix(steps[0].Action, "start the RabbitMQ application on rabbit@ctl1") {
		t.Fatalf("plan with ctl1's application stopped: %d steps, want its start_app and the check: %+v", len(steps), steps)
	}
	runSteps(t, ctx, steps)
	checkCluster(t)
	if err := amqpLogin(ctx, ctl1, r.User, store.Get(secrets.RabbitServicePassword), r.VHost); err != nil {
		t.Errorf("AMQP login on ctl1 after its application was started again: %v", err)
	}
	if steps := planSteps(t, ctx, tg); len(steps) != 0 {
		t.Fatalf("plan after the paused broker was started: %d steps, want none", len(steps))
	}

	// A broker whose boot hangs, as RabbitMQ 3.10.8's does in Erlang's
	// global after a partition: its application is started again and
	// the process running the boot is suspended (and stays so while the
	// process that suspended it lives), so the boot state stays
	// "booting". The plan waits for it; once it has stayed booting for
	// stuckBoot while ctl2 and ctl3 run, its service is restarted.
	if _, err := ctl1Node.Run(ctx, node.Cmd{Argv: []string{"rabbitmqctl", "stop_app"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl1Node.Run(ctx, node.Cmd{Argv: []string{"rabbitmqctl", "eval", hangBoot}}); err != nil {
		t.Fatal(err)
	}
	if err := plan.WaitFor(ctx, "rabbit@ctl1 booting", 30*time.Second, func(ctx context.Context) (bool, string) {
		s := bootState(ctx, ctl1Node)
		return s == "booting", s
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if s := bootState(ctx, ctl1Node); s != "booting" {
		t.Fatalf("ctl1's suspended boot went on: boot state %q", s)
	}
	before, err := ctl1Node.Services().Status(ctx, ServiceName)
	if err != nil {
		t.Fatal(err)
	}
	steps = planSteps(t, ctx, tg)
	if len(steps) != 2 || steps[0].Host != "ctl1" || !strings.HasPrefix(steps[0].Action, "wait until rabbit@ctl1 answers") {
		t.Fatalf("plan with ctl1's boot hung: %d steps, want the wait for it and the check: %+v", len(steps), steps)
	}
	t0 = time.Now()
	runSteps(t, ctx, steps)
	t.Logf("ctl1's hung boot mended in %s", time.Since(t0).Round(time.Millisecond))
	after, err := ctl1Node.Services().Status(ctx, ServiceName)
	if err != nil {
		t.Fatal(err)
	}
	if after.PID == before.PID || !after.Started.After(before.Started) {
		t.Errorf("ctl1's broker answers again but was not restarted: pid %d started %s, before pid %d started %s", after.PID, after.Started, before.PID, before.Started)
	}
	checkCluster(t)
	if err := amqpLogin(ctx, ctl1, r.User, store.Get(secrets.RabbitServicePassword), r.VHost); err != nil {
		t.Errorf("AMQP login on ctl1 after its hung boot was mended: %v", err)
	}
	if steps := planSteps(t, ctx, tg); len(steps) != 0 {
		t.Fatalf("plan after the hung boot was mended: %d steps, want none", len(steps))
	}

	// A configuration change: files everywhere, then one restart at a
	// time, each node back in the cluster before the next goes down.
	c.Spec.RabbitMQ.NetTickTime.Duration += 5 * time.Second
	steps = planSteps(t, ctx, tg)
	restarts := 0
	for _, s := range steps {
		if strings.HasPrefix(s.Action, "restart") {
			restarts++
		}
	}
	if waves := plan.Waves(steps); restarts != len(ctls) || len(waves) != 1+len(ctls)+1 {
		t.Fatalf("plan after a configuration change: %d restarts in %d waves, want %d restarts, one per wave, between the files and the check", restarts, len(waves), len(ctls))
	}
	// The run is interrupted after the files and the first restart (a
	// failed restart, a Ctrl-C): the next plan finds every file as
	// rendered, yet the brokers not restarted run with the old
	// configuration. It must restart exactly those.
	waves := plan.Waves(steps)
	t0 = time.Now()
	runSteps(t, ctx, append(append([]plan.Step{}, waves[0]...), waves[1]...))
	first := waves[1][0].Host
	steps = planSteps(t, ctx, tg)
	restarted := map[string]bool{}
	for _, s := range steps {
		if strings.HasPrefix(s.Action, "restart") {
			restarted[s.Host] = true
		} else if strings.HasPrefix(s.Action, "write") {
			t.Errorf("plan after an interrupted run writes files again: %s %s", s.Host, s.Action)
		}
	}
	if len(restarted) != len(ctls)-1 || restarted[first] {
		t.Fatalf("plan after an interrupted rolling restart (%s restarted): restarts %v, want every other controller", first, restarted)
	}
	runSteps(t, ctx, steps)
	t.Logf("rolling restart of %d nodes in %s (interrupted after the first)", len(ctls), time.Since(t0).Round(time.Millisecond))
	checkCluster(t)
	if steps := planSteps(t, ctx, tg); len(steps) != 0 {
		t.Fatalf("plan after the rolling restart: %d steps, want none", len(steps))
	}

	// Every broker stopped (a power cut of the whole control plane): the
	// former members start together, as none boots without the others.
	stopAll := func() {
		t.Helper()
		if err := plan.ForEach(ctx, plan.Names(ctls), func(ctx context.Context, name string) error {
			return tg.Node(name).Services().Stop(ctx, ServiceName, time.Minute)
		}); err != nil {
			t.Fatal(err)
		}
	}
	stopAll()
	steps = planSteps(t, ctx, tg)
	if waves := plan.Waves(steps); len(waves) != 2 || len(waves[0]) != len(ctls) {
		t.Fatalf("plan after a full stop: %d waves, want the %d starts in one, then the check", len(waves), len(ctls))
	}
	t0 = time.Now()
	runSteps(t, ctx, steps)
	t.Logf("full cluster start in %s", time.Since(t0).Round(time.Millisecond))
	checkCluster(t)
	if steps := planSteps(t, ctx, tg); len(steps) != 0 {
		t.Fatalf("plan after the full start: %d steps, want none", len(steps))
	}

	// ctl3 rebuilt and started by hand while its peers were down: blank
	// and alone, it formed a cluster of its own. The plan refuses to go
	// on and says how to keep one cluster; done as it says (keep the
	// others', wipe ctl3, force one of them to boot), the next plan
	// brings the three together.
	wipe3 := func() {
		t.Helper()
		if _, err := tg.Node("ctl3").Run(ctx, node.Cmd{Argv: []string{"sh", "-c", "rm -rf /var/lib/rabbitmq/mnesia/rabbit@ctl3*"}}); err != nil {
			t.Fatal(err)
		}
	}
	stopAll()
	wipe3()
	if err := tg.Node("ctl3").Services().Start(ctx, Service()); err != nil {
		t.Fatal(err)
	}
	if err := plan.WaitFor(ctx, "ctl3 alone answering", bootTimeout, func(ctx context.Context) (bool, string) {
		_, err := admin(ctls[2]).nodes(ctx)
		return err == nil, fmt.Sprint(err)
	}); err != nil {
		t.Fatal(err)
	}
	_, err = Phase().Plan(ctx, tg)
	if err == nil || !strings.Contains(err.Error(), "does not include rabbit@ctl1, rabbit@ctl2") {
		t.Fatalf("plan with ctl3 in a cluster of its own: %v, want it refused", err)
	}
	t.Logf("refused as it should be: %v", err)
	if err := tg.Node("ctl3").Services().Stop(ctx, ServiceName, time.Minute); err != nil {
		t.Fatal(err)
	}
	wipe3()
	// ctl1 and ctl2 stopped while ctl3 ran: at boot each would wait for
	// it, and the blank ctl3 cannot come up before them.
	_, err = Phase().Plan(ctx, tg)
	if err == nil || !strings.Contains(err.Error(), "rabbitmqctl force_boot") {
		t.Fatalf("plan with ctl1 and ctl2 awaiting the wiped ctl3: %v, want it refused", err)
	}
	t.Logf("refused as it should be: %v", err)
	if _, err := tg.Node("ctl1").Run(ctx, node.Cmd{Argv: []string{"rabbitmqctl", "force_boot"}}); err != nil {
		t.Fatal(err)
	}
	steps = planSteps(t, ctx, tg)
	if waves := plan.Waves(steps); len(waves) != 4 || len(waves[0]) != 2 || waves[1][0].Host != "ctl3" || !strings.HasPrefix(waves[3][0].Action, queueRepairAction) {
		t.Fatalf("plan after wiping ctl3: %d waves, want ctl1 and ctl2 together, then ctl3, then the check, then the quorum queues grown onto ctl3", len(waves))
	}
	runSteps(t, ctx, steps)
	checkCluster(t)
	if steps := planSteps(t, ctx, tg); len(steps) != 0 {
		t.Fatalf("plan after the rejoin: %d steps, want none", len(steps))
	}

	// A controller hung for 30 s (SIGSTOP: no TCP reset), then thawed.
	// The others declare it down after net_ticktime; thawed, it finds
	// them "gone": a partition that RabbitMQ does not heal by itself
	// under pause_minority. With quorum queues the phase restarts the
	// minority and the bus is whole again, with no command given.
	if _, err := l.Freeze(ctx, "ctl1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	case <-time.After(30 * time.Second):
	}
	if _, err := l.Thaw(ctx, "ctl1"); err != nil {
		t.Fatal(err)
	}
	// The views can look whole for a moment after the thaw, before the
	// brokers reconnect and find the partition (seen in a CI run): whole
	// counts only once it has held for 15 s.
	partitioned := false
	var wholeSince time.Time
	_ = plan.WaitFor(ctx, "a partition, or the cluster whole again", 90*time.Second, func(ctx context.Context) (bool, string) {
		whole := true
		for _, n := range ctls {
			members, err := admin(n).nodes(ctx)
			if err != nil {
				whole = false
				continue
			}
			for _, m := range members {
				if len(m.Partitions) > 0 {
					partitioned = true
				}
				whole = whole && m.Running && len(m.Partitions) == 0
			}
		}
		switch {
		case !whole:
			wholeSince = time.Time{}
		case wholeSince.IsZero():
			wholeSince = time.Now()
		}
		return partitioned || (whole && time.Since(wholeSince) >= 15*time.Second), ""
	})
	t.Logf("after a 30 s freeze of ctl1: partitioned=%v", partitioned)
	t0 = time.Now()
	steps = planSteps(t, ctx, tg)
	healed := false
	for _, s := range steps {
		healed = healed || strings.Contains(s.Action, "cut off from the majority in a partition")
	}
	if partitioned && !healed {
		t.Fatalf("a partition after the freeze, and the plan does not heal it: %+v", steps)
	}
	runSteps(t, ctx, steps)
	if steps := planSteps(t, ctx, tg); len(steps) > 0 {
		// The heal ends the first run; what the partition left (a paused
		// broker's definitions) is for the second, as a second 'up'.
		runSteps(t, ctx, steps)
	}
	t.Logf("bus whole again %s after the thaw was planned for (heal step planned: %v)", time.Since(t0).Round(time.Millisecond), healed)
	checkCluster(t)
}

// amqpLogin opens an AMQP 0-9-1 connection with PLAIN credentials and opens
// vhost: the handshake every OpenStack service does first. It returns nil
// when the broker accepts both the login and the vhost.
func amqpLogin(ctx context.Context, addr, user, password, vhost string) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	rd := bufio.NewReader(conn)
	if _, err := conn.Write([]byte("AMQP\x00\x00\x09\x01")); err != nil {
		return err
	}
	if _, err := expectMethod(rd, 10, 10); err != nil { // connection.start
		return err
	}
	var b bytes.Buffer
	b.Write([]byte{0, 0, 0, 0}) // client-properties: empty table
	shortstr(&b, "PLAIN")
	longstr(&b, "\x00"+user+"\x00"+password)
	shortstr(&b, "en_US")
	if err := sendMethod(conn, 10, 11, b.Bytes()); err != nil { // connection.start-ok
		return err
	}
	// A refused login: the broker closes the socket (the client did not
	// announce authentication_failure_close), so this read fails.
	tune, err := expectMethod(rd, 10, 30) // connection.tune
	if err != nil {
		return fmt.Errorf("login refused: %w", err)
	}
	if len(tune) < 8 {
		return fmt.Errorf("connection.tune of %d bytes", len(tune))
	}
	// connection.tune-ok: the broker's channel-max and frame-max (it
	// refuses 0, "no limit", when it has one), no heartbeats.
	b.Reset()
	b.Write(tune[:6])
	b.Write([]byte{0, 0})
	if err := sendMethod(conn, 10, 31, b.Bytes()); err != nil {
		return err
	}
	b.Reset()
	shortstr(&b, vhost)
	shortstr(&b, "")
	b.WriteByte(0)
	if err := sendMethod(conn, 10, 40, b.Bytes()); err != nil { // connection.open
		return err
	}
	if _, err := expectMethod(rd, 10, 41); err != nil { // connection.open-ok
		return fmt.Errorf("vhost %s refused: %w", vhost, err)
	}
	return nil
}

func shortstr(b *bytes.Buffer, s string) {
	b.WriteByte(byte(len(s)))
	b.WriteString(s)
}

func longstr(b *bytes.Buffer, s string) {
	binary.Write(b, binary.BigEndian, uint32(len(s)))
	b.WriteString(s)
}

func sendMethod(w io.Writer, class, method uint16, args []byte) error {
	var f bytes.Buffer
	f.WriteByte(1)                                          // method frame
	binary.Write(&f, binary.BigEndian, uint16(0))           // channel 0
	binary.Write(&f, binary.BigEndian, uint32(4+len(args))) // size
	binary.Write(&f, binary.BigEndian, class)
	binary.Write(&f, binary.BigEndian, method)
	f.Write(args)
	f.WriteByte(0xCE) // frame end
	_, err := w.Write(f.Bytes())
	return err
}

// expectMethod reads one frame, checks it is the given method and returns
// the method's arguments. A connection.close instead carries the broker's
// reason.
func expectMethod(r *bufio.Reader, class, method uint16) ([]byte, error) {
	var hdr [7]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(hdr[3:])
	if size > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", size)
	}
	payload := make([]byte, size+1)
	if _, err := io.ReadFull(r, payload); err != nil {
		return nil, err
	}
	if hdr[0] != 1 || size < 4 {
		return nil, fmt.Errorf("frame type %d, want a method", hdr[0])
	}
	c, m := binary.BigEndian.Uint16(payload), binary.BigEndian.Uint16(payload[2:])
	if c == 10 && m == 50 && size >= 7 { // connection.close: reply-code, reply-text
		code := binary.BigEndian.Uint16(payload[4:])
		n := int(payload[6])
		text := string(payload[7:min(7+n, int(size))])
		return nil, fmt.Errorf("connection.close %d %s", code, text)
	}
	if c != class || m != method {
		return nil, fmt.Errorf("method %d.%d, want %d.%d", c, m, class, method)
	}
	return payload[4:size], nil
}

// testCluster is the example spec with n controllers.
func testCluster(t *testing.T, controllers int) *spec.Cluster {
	t.Helper()
	y, err := spec.ExampleYAML(spec.ExampleOptions{Name: "unit", Controllers: controllers, Computes: 1, Lab: true})
	if err != nil {
		t.Fatal(err)
	}
	c, ps := spec.Parse(y)
	if err := ps.Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

func testEnv(t *testing.T, c *spec.Cluster) *env {
	t.Helper()
	s := secrets.NewValues(map[string]string{secrets.RabbitAdminPassword: "admin", secrets.RabbitServicePassword: "svc", secrets.ErlangCookie: "cookie"})
	defs, err := Definitions(c, s)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: &plan.Target{Cluster: c, Secrets: s}, ctls: c.Controllers(), adminPassword: s.Get(secrets.RabbitAdminPassword), defs: defs}
}

// nodeState is a controller's facts in a few words.
type nodeState struct {
	running, answers, hasData bool
	statsDead                 bool
	drained                   bool     // in maintenance mode: both ports refuse
	paused                    bool     // the application stopped: both ports refuse
	changed                   []string // files whose content differs
	apiErr                    error    // when running and not answering; default: connection refused
}

func testFacts(t *testing.T, e *env, states map[string]nodeState) []*facts {
	t.Helper()
	var all []*facts
	for _, n := range e.ctls {
		st := states[n.Name]
		files, err := Renderer{}.Files(e.t.Cluster, n, e.t.Secrets)
		if err != nil {
			t.Fatal(err)
		}
		f := &facts{n: n, files: files, dirsOK: true, running: st.running, hasData: st.hasData, statsDead: st.statsDead, drained: st.drained, paused: st.paused}
		for _, p := range st.changed {
			i := slices.IndexFunc(files, func(f engine.File) bool { return f.Path == p })
			if i < 0 {
				t.Fatalf("no rendered file %s", p)
			}
			f.stale = append(f.stale, files[i])
			f.changed = append(f.changed, files[i])
		}
		if st.running && !st.answers {
			f.apiErr = st.apiErr
			if f.apiErr == nil {
				f.apiErr = errors.New("connection refused")
			}
		}
		if st.running && st.answers {
			// One cluster of every node that runs or ran.
			for _, o := range e.ctls {
				if os := states[o.Name]; os.running || os.hasData {
					f.members = append(f.members, clusterNode{Name: NodeName(o), Running: os.running})
				}
			}
		}
		all = append(all, f)
	}
	return all
}

func TestErlangAtoms(t *testing.T) {
	for in, want := range map[string][]string{
		"[rabbit@ctl1,rabbit@ctl2,rabbit@ctl3].\n": {"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"},
		"['rabbit@ctl-1', rabbit@ctl2].":           {"rabbit@ctl-1", "rabbit@ctl2"},
		"[].":                                      nil,
	} {
		if got := erlangAtoms(in); !slices.Equal(got, want) {
			t.Errorf("erlangAtoms(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSchedule(t *testing.T) {
	c := testCluster(t, 3)
	allFiles := []string{EnvPath, ConfigPath, AdvancedPath, PluginsPath, DefinitionsPath, CookiePath}
	healthy := nodeState{running: true, answers: true, hasData: true}
	stopped := nodeState{hasData: true}
	blank := nodeState{changed: allFiles}
	for _, tc := range []struct {
		name   string
		states map[string]nodeState
		want   []string // "wave host what", what a substring of the action
	}{
		{"healthy", map[string]nodeState{"ctl1": healthy, "ctl2": healthy, "ctl3": healthy}, nil},
		{"fresh: the first controller forms the cluster, the others join one at a time",
			map[string]nodeState{"ctl1": blank, "ctl2": blank, "ctl3": blank},
			[]string{"0 ctl1 write /etc/rabbitmq/rabbitmq-env.conf", "0 ctl2 write", "0 ctl3 write",
				"2 ctl1 first node", "3 ctl2 joins rabbit@ctl1", "4 ctl3 joins rabbit@ctl1, rabbit@ctl2", "5 ctl3 check the cluster"}},
		{"one broker down: only it starts",
			map[string]nodeState{"ctl1": healthy, "ctl2": stopped, "ctl3": healthy},
			[]string{"2 ctl2 start rabbitmq-server (rabbit@ctl2); wait until it is back in the cluster with rabbit@ctl1, rabbit@ctl3", "3 ctl2 check the cluster"}},
		{"full stop: former members start together",
			map[string]nodeState{"ctl1": stopped, "ctl2": stopped, "ctl3": stopped},
			[]string{"2 ctl1 at once", "2 ctl2 at once", "2 ctl3 at once", "3 ctl3 check the cluster"}},
		{"full stop with one node wiped: it joins after the others",
			map[string]nodeState{"ctl1": stopped, "ctl2": stopped, "ctl3": blank},
			[]string{"0 ctl3 write", "2 ctl1 at once", "2 ctl2 at once", "3 ctl3 joins rabbit@ctl1, rabbit@ctl2", "4 ctl3 check the cluster",
				"5 ctl3 restore the quorum queues' membership"}},
		{"a rebuilt controller (blank) joins the running cluster; the quorum queues grow onto it",
			map[string]nodeState{"ctl1": healthy, "ctl2": blank, "ctl3": healthy},
			[]string{"0 ctl2 write", "2 ctl2 joins rabbit@ctl1, rabbit@ctl3", "3 ctl2 check the cluster", "4 ctl2 restore the quorum queues' membership"}},
		{"configuration changed: rolling restart",
			map[string]nodeState{
				"ctl1": {running: true, answers: true, hasData: true, changed: []string{ConfigPath}},
				"ctl2": {running: true, answers: true, hasData: true, changed: []string{ConfigPath, DefinitionsPath}},
				"ctl3": {running: true, answers: true, hasData: true, changed: []string{ConfigPath}},
			},
			[]string{"0 ctl1 write /etc/rabbitmq/rabbitmq.conf", "0 ctl2 write", "0 ctl3 write",
				"2 ctl1 restart rabbitmq-server (rabbit@ctl1) for the changed /etc/rabbitmq/rabbitmq.conf; wait until it is back in the cluster with rabbit@ctl2, rabbit@ctl3",
				"3 ctl2 for the changed /etc/rabbitmq/rabbitmq.conf;", "4 ctl3 restart", "5 ctl3 check the cluster"}},
		{"only definitions changed: written, applied through the API, no restart",
			map[string]nodeState{
				"ctl1": {running: true, answers: true, hasData: true, changed: []string{DefinitionsPath}},
				"ctl2": {running: true, answers: true, hasData: true, changed: []string{DefinitionsPath}},
				"ctl3": {running: true, answers: true, hasData: true, changed: []string{DefinitionsPath}},
			},
			[]string{"0 ctl1 write /etc/rabbitmq/definitions.json", "0 ctl2 write", "0 ctl3 write"}},
		{"a broker still booting is waited for, not restarted",
			map[string]nodeState{"ctl1": {running: true, hasData: true}, "ctl2": healthy, "ctl3": healthy},
			[]string{"1 ctl1 wait until rabbit@ctl1 answers", "2 ctl1 check the cluster"}},
		{"a broker whose statistics died gets its management agent back, nothing restarted",
			map[string]nodeState{"ctl1": healthy, "ctl2": {running: true, answers: true, hasData: true, statsDead: true}, "ctl3": healthy},
			[]string{"2 ctl2 restart the management agent on rabbit@ctl2"}},
		{"a broker left in maintenance mode is revived, not waited for",
			map[string]nodeState{"ctl1": healthy, "ctl2": {running: true, hasData: true, drained: true}, "ctl3": healthy},
			[]string{"2 ctl2 take rabbit@ctl2 out of maintenance mode", "3 ctl2 check the cluster"}},
		{"a paused broker (application stopped) is started, not waited for",
			map[string]nodeState{"ctl1": {running: true, hasData: true, paused: true}, "ctl2": healthy, "ctl3": healthy},
			[]string{"1 ctl1 start the RabbitMQ application on rabbit@ctl1", "2 ctl1 check the cluster"}},
		{"a paused broker with a changed configuration is restarted instead",
			map[string]nodeState{"ctl1": healthy, "ctl2": {running: true, hasData: true, paused: true, changed: []string{ConfigPath}}, "ctl3": healthy},
			[]string{"0 ctl2 write", "2 ctl2 restart", "3 ctl2 check the cluster"}},
		{"a broker in maintenance mode with a changed configuration is restarted, which revives it",
			map[string]nodeState{"ctl1": healthy, "ctl2": healthy, "ctl3": {running: true, hasData: true, drained: true, changed: []string{ConfigPath}}},
			[]string{"0 ctl3 write", "2 ctl3 restart", "3 ctl3 check the cluster"}},
		{"a broker restarted anyway needs no separate agent restart",
			map[string]nodeState{"ctl1": healthy, "ctl2": healthy, "ctl3": {running: true, answers: true, hasData: true, statsDead: true, changed: []string{ConfigPath}}},
			[]string{"0 ctl3 write", "2 ctl3 restart", "3 ctl3 check the cluster"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testEnv(t, c)
			steps, _, _ := schedule(e, testFacts(t, e, tc.states))
			var got []string
			for _, w := range plan.Waves(steps) {
				for _, s := range w {
					got = append(got, fmt.Sprintf("%d %s %s", s.Wave, s.Host, s.Action))
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d steps, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				wave, rest, _ := strings.Cut(w, " ")
				host, what, _ := strings.Cut(rest, " ")
				if !strings.HasPrefix(got[i], wave+" "+host+" ") || !strings.Contains(got[i], what) {
					t.Errorf("step %d: %q, want wave %s on %s with %q", i, got[i], wave, host, what)
				}
			}
			for _, s := range steps {
				if strings.Contains(s.Action, "SECRET(") {
					t.Errorf("step names a secret: %s", s.Action)
				}
			}
		})
	}
}

func TestRefuseUnsafe(t *testing.T) {
	c := testCluster(t, 3)
	// Classic mirrored queues: a partition is the operator's to heal
	// (TestPartitionHealedWithQuorumQueues: with quorum queues, up heals).
	c.Spec.RabbitMQ.QueueType = spec.QueueMirrored
	healthy := nodeState{running: true, answers: true, hasData: true}
	stopped := nodeState{hasData: true}
	all3 := map[string]nodeState{"ctl1": healthy, "ctl2": healthy, "ctl3": healthy}
	for _, tc := range []struct {
		name   string
		states map[string]nodeState
		edit   func(all []*facts)
		want   string // "" for no error
	}{
		{"healthy", all3, nil, ""},
		{"split clusters", all3, func(all []*facts) {
			all[2].members = []clusterNode{{Name: "rabbit@ctl3", Running: true}}
			for _, f := range all[:2] {
				f.members = f.members[:2]
			}
		}, "2 separate RabbitMQ clusters (ctl1, ctl2 see members [rabbit@ctl1, rabbit@ctl2]; ctl3 see members [rabbit@ctl3])"},
		{"partition", all3, func(all []*facts) {
			all[0].members[2].Partitions = []string{"rabbit@ctl1", "rabbit@ctl2"}
		}, "The minority side is ctl3: once the network between the nodes works (a frozen or paused node stays partitioned after it resumes), restart the broker there"},
		{"partition seen from both sides", all3, func(all []*facts) {
			for _, f := range all {
				f.members[0].Partitions = []string{"rabbit@ctl3"}
				f.members[1].Partitions = []string{"rabbit@ctl3"}
				f.members[2].Partitions = []string{"rabbit@ctl2", "rabbit@ctl1"}
			}
		}, "RabbitMQ is partitioned (rabbit@ctl1 cannot reach rabbit@ctl3; rabbit@ctl2 cannot reach rabbit@ctl3; rabbit@ctl3 cannot reach rabbit@ctl1, rabbit@ctl2); partition handling is pause_minority. The minority side is ctl3: "},
		{"partition seen by one node only", all3, func(all []*facts) {
			all[1].members[1].Partitions = []string{"rabbit@ctl3"}
		}, "RabbitMQ is partitioned (rabbit@ctl2 cannot reach rabbit@ctl3); partition handling is pause_minority. No node is cut off from a majority of the 3 nodes"},
		{"stray member", all3, func(all []*facts) {
			for _, f := range all {
				f.members = append(f.members, clusterNode{Name: "rabbit@old1"})
			}
		}, "forget_cluster_node rabbit@old1"},
		{"administrator refused", map[string]nodeState{"ctl1": {running: true, apiErr: &apiError{Status: http.StatusUnauthorized}}, "ctl2": healthy, "ctl3": healthy}, nil,
			"ctl1: the management API refuses hastack's administrator"},
		{"one node stopped", map[string]nodeState{"ctl1": stopped, "ctl2": healthy, "ctl3": healthy}, nil, ""},
		{"stopped nodes hold another cluster's data", map[string]nodeState{"ctl1": stopped, "ctl2": stopped, "ctl3": healthy}, func(all []*facts) {
			all[2].members = []clusterNode{{Name: "rabbit@ctl3", Running: true}}
		},
			"ctl3 runs a cluster of [rabbit@ctl3] that does not include rabbit@ctl1, rabbit@ctl2, which hold the data of another RabbitMQ cluster"},
		{"a stopped blank node joins", map[string]nodeState{"ctl1": {}, "ctl2": healthy, "ctl3": healthy}, nil, ""},
		{"full stop, awaiting a rebuilt node", map[string]nodeState{"ctl1": stopped, "ctl2": stopped, "ctl3": {}}, func(all []*facts) {
			for _, f := range all[:2] {
				f.runningAtShutdown = []string{"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"}
			}
		}, "ctl1, ctl2 each wait at boot for rabbit@ctl3"},
		{"full stop, awaiting a rebuilt node, force_boot done", map[string]nodeState{"ctl1": stopped, "ctl2": stopped, "ctl3": {}}, func(all []*facts) {
			for _, f := range all[:2] {
				f.runningAtShutdown = []string{"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"}
			}
			all[1].forceBoot = true
		}, ""},
		{"full stop, the rebuilt node stopped first", map[string]nodeState{"ctl1": stopped, "ctl2": stopped, "ctl3": {}}, func(all []*facts) {
			for _, f := range all[:2] {
				f.runningAtShutdown = []string{"rabbit@ctl1", "rabbit@ctl2"}
			}
		}, ""},
		{"cookie changed under a running cluster", all3, func(all []*facts) {
			all[1].cookieChanged = true
		}, "ctl2: the Erlang cookie differs"},
		{"cookie changed on a stopped cluster", map[string]nodeState{"ctl1": {hasData: true}, "ctl2": {hasData: true}, "ctl3": {hasData: true}}, func(all []*facts) {
			for _, f := range all {
				f.cookieChanged = true
			}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testEnv(t, c)
			all := testFacts(t, e, tc.states)
			if tc.edit != nil {
				tc.edit(all)
			}
			err := refuseUnsafe(e, all)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want an error with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			case err != nil && strings.Count(err.Error(), "\n") > 0 && tc.name != "split clusters":
				t.Errorf("one problem reported more than once:\n%v", err)
			}
			// Every refusal is typed and carries its remedy.
			var r *plan.Refusal
			if err != nil && (!errors.As(err, &r) || r.Problem == "" || r.Remedy == "") {
				t.Errorf("refusal %q is not a plan.Refusal with a remedy", err)
			}
		})
	}
}

// fakeAPI is the part of the management API the phase uses, over a map.
type fakeAPI struct {
	mu       sync.Mutex
	login    string
	password string
	users    map[string]mgmtUser
	vhosts   map[string]bool
	perms    map[string]permission // vhost "\x00" user
	policies map[string]policy     // vhost "\x00" name
	calls    []string              // "METHOD path" of every change
}

func newFakeAPI(login, password string) *fakeAPI {
	return &fakeAPI{login: login, password: password, users: map[string]mgmtUser{}, vhosts: map[string]bool{},
		perms: map[string]permission{}, policies: map[string]policy{}}
}

func (a *fakeAPI) load(t *testing.T, defsJSON []byte) {
	var d definitions
	if err := json.Unmarshal(defsJSON, &d); err != nil {
		t.Fatal(err)
	}
	for _, u := range d.Users {
		tags, _ := json.Marshal(u.Tags)
		a.users[u.Name] = mgmtUser{Name: u.Name, PasswordHash: u.PasswordHash, Algorithm: u.Algorithm, Tags: tags}
	}
	for _, v := range d.VHosts {
		a.vhosts[v.Name] = true
	}
	for _, p := range d.Permissions {
		a.perms[p.VHost+"\x00"+p.User] = p
	}
	for _, p := range d.Policies {
		a.policies[p.VHost+"\x00"+p.Name] = p
	}
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if u, p, ok := r.BasicAuth(); !ok || u != a.login || p != a.password {
		http.Error(w, `{"error":"not_authorised"}`, http.StatusUnauthorized)
		return
	}
	var seg []string
	for _, s := range strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/api/"), "/") {
		u, _ := url.PathUnescape(s)
		seg = append(seg, u)
	}
	if r.Method != http.MethodGet {
		a.calls = append(a.calls, r.Method+" "+r.URL.EscapedPath())
	}
	reply := func(v any, ok bool) {
		if !ok {
			http.Error(w, `{"error":"Object Not Found","reason":"Not Found"}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.Method == http.MethodGet && len(seg) == 2 && seg[0] == "users":
		u, ok := a.users[seg[1]]
		reply(u, ok)
	case r.Method == http.MethodDelete && len(seg) == 2 && seg[0] == "users":
		_, ok := a.users[seg[1]]
		delete(a.users, seg[1])
		reply(nil, ok)
	case r.Method == http.MethodGet && len(seg) == 2 && seg[0] == "vhosts":
		reply(map[string]string{"name": seg[1]}, a.vhosts[seg[1]])
	case r.Method == http.MethodGet && len(seg) == 3 && seg[0] == "permissions":
		p, ok := a.perms[seg[1]+"\x00"+seg[2]]
		reply(p, ok)
	case r.Method == http.MethodGet && len(seg) == 3 && seg[0] == "policies":
		p, ok := a.policies[seg[1]+"\x00"+seg[2]]
		reply(p, ok)
	case r.Method == http.MethodPost && len(seg) == 1 && seg[0] == "definitions":
		var body bytes.Buffer
		body.ReadFrom(r.Body)
		var d definitions
		if err := json.Unmarshal(body.Bytes(), &d); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// The real import merges: it creates and overwrites, never deletes.
		for _, u := range d.Users {
			tags, _ := json.Marshal(u.Tags)
			a.users[u.Name] = mgmtUser{Name: u.Name, PasswordHash: u.PasswordHash, Algorithm: u.Algorithm, Tags: tags}
		}
		for _, v := range d.VHosts {
			a.vhosts[v.Name] = true
		}
		for _, p := range d.Permissions {
			a.perms[p.VHost+"\x00"+p.User] = p
		}
		for _, p := range d.Policies {
			a.policies[p.VHost+"\x00"+p.Name] = p
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "not in the fake: "+r.Method+" "+r.URL.Path, http.StatusMethodNotAllowed)
	}
}

func fakeClient(t *testing.T, a *fakeAPI, password string) *mgmt {
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	p, _ := strconv.Atoi(port)
	return newMgmt("ctl1", host, p, AdminUser, password)
}

func TestProvision(t *testing.T) {
	for _, queueType := range []string{spec.QueueQuorum, spec.QueueMirrored} {
		t.Run(queueType, func(t *testing.T) {
			c := testCluster(t, 3)
			c.Spec.RabbitMQ.QueueType = queueType
			e := testEnv(t, c)
			a := newFakeAPI(AdminUser, e.adminPassword)
			a.load(t, e.defs)
			api := fakeClient(t, a, e.adminPassword)
			ctx := context.Background()

			if fixes, err := drift(ctx, api, e.defs); err != nil || len(fixes) != 0 {
				t.Fatalf("drift of a cluster loaded from the definitions: %q, %v", fixes, err)
			}
			if err := provision(ctx, e, api); err != nil || len(a.calls) != 0 {
				t.Fatalf("provision of a cluster as defined: %v, changes %q", err, a.calls)
			}

			// Drift: guest exists, a password and a permission changed by hand.
			a.users["guest"] = mgmtUser{Name: "guest", Tags: json.RawMessage(`["administrator"]`)}
			u := a.users["openstack"]
			u.PasswordHash = PasswordHash("openstack", "changed-by-hand")
			a.users["openstack"] = u
			p := a.perms["/\x00openstack"]
			p.Write = "^$"
			a.perms["/\x00openstack"] = p
			fixes, err := drift(ctx, api, e.defs)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"set the password of user openstack from the secrets file", `set the permissions of user openstack on vhost / to ".*" ".*" ".*"`, fixGuest}
			if !slices.Equal(fixes, want) {
				t.Fatalf("drift: %q, want %q", fixes, want)
			}
			if err := provision(ctx, e, api); err != nil {
				t.Fatal(err)
			}
			if want := []string{"DELETE /api/users/guest", "POST /api/definitions"}; !slices.Equal(a.calls, want) {
				t.Errorf("changes: %q, want %q", a.calls, want)
			}
			if fixes, err := drift(ctx, api, e.defs); err != nil || len(fixes) != 0 {
				t.Errorf("drift after provision: %q, %v", fixes, err)
			}

			// Refused credentials are an HTTP 401 the caller can tell apart.
			_, _, err = fakeClient(t, a, "wrong").user(ctx, "openstack")
			if !isStatus(err, http.StatusUnauthorized) || strings.Contains(err.Error(), e.adminPassword) {
				t.Errorf("wrong password: %v, want a 401 that does not show the password", err)
			}
		})
	}
}

func TestFeatureFlagRace(t *testing.T) {
	// The end of a real failure (CI, RabbitMQ 3.10.8, two former members
	// started together after a force_boot).
	race := errors.New(`ctl1: /usr/lib/rabbitmq/bin/rabbitmq-server exited with code 0 while booting
--- last lines of /var/log/hastack/rabbitmq.log on ctl1:
Kernel pid terminated (application_controller) ({application_start_failure,rabbit,{{incompatible_feature_flags,{badrpc,{'EXIT',{{badmap,undefined},[{maps,get,[depends_on,undefined,[]]}]}}}},{rabbit,start,[normal,[]]}}})`)
	if !featureFlagRace(race) {
		t.Error("the feature-flag race was not recognised")
	}
	for _, err := range []error{
		errors.New("ctl1: rabbitmq-server exited with code 1 while booting\n{incompatible_feature_flags,[{rabbit@ctl2,quorum_queue}]}"),
		errors.New("ctl1: rabbit@ctl1 running in the cluster: not done after 5m0s: badrpc"),
	} {
		if featureFlagRace(err) {
			t.Errorf("recognised as the race: %v", err)
		}
	}
}

// With quorum queues, a partition whose minority is clear is healed by the
// phase (the minority's application restarted), not refused; without a
// clear minority, or with a minority broker not running, it is refused.
func TestPartitionHealedWithQuorumQueues(t *testing.T) {
	c := testCluster(t, 3)
	healthy := nodeState{running: true, answers: true, hasData: true}
	for _, tc := range []struct {
		name   string
		states map[string]nodeState
		edit   func(all []*facts)
		heal   string
		refuse string
	}{
		{"minority seen by the majority", map[string]nodeState{"ctl1": healthy, "ctl2": healthy, "ctl3": healthy}, func(all []*facts) {
			all[0].members[2].Partitions = []string{"rabbit@ctl1", "rabbit@ctl2"}
		}, "ctl3", ""},
		// The majority paused itself (pause_minority): its brokers run but
		// do not answer; the thawed node answers alone.
		{"majority paused, the thawed node alone", map[string]nodeState{"ctl1": healthy, "ctl2": {running: true, hasData: true, apiErr: errors.New("paused")}, "ctl3": {running: true, hasData: true, apiErr: errors.New("paused")}}, func(all []*facts) {
			all[0].members[0].Partitions = []string{"rabbit@ctl2", "rabbit@ctl3"}
		}, "ctl1", ""},
		// One-sided view, as seen after a 30 s freeze of ctl1: only ctl2
		// says it cannot reach ctl1. ctl1 is the node its peers gave up on.
		{"one-sided report", map[string]nodeState{"ctl1": healthy, "ctl2": healthy, "ctl3": healthy}, func(all []*facts) {
			all[1].members[1].Partitions = []string{"rabbit@ctl1"}
		}, "ctl1", ""},
		{"two nodes that cannot reach each other: no way to tell", map[string]nodeState{"ctl1": healthy, "ctl2": healthy, "ctl3": healthy}, func(all []*facts) {
			all[0].members[0].Partitions = []string{"rabbit@ctl2"}
			all[0].members[1].Partitions = []string{"rabbit@ctl1"}
		}, "", "No node is cut off from a majority"},
		{"a majority broker not running", map[string]nodeState{"ctl1": healthy, "ctl2": healthy, "ctl3": {hasData: true}}, func(all []*facts) {
			all[0].members[0].Partitions = []string{"rabbit@ctl2", "rabbit@ctl3"}
		}, "", "The minority side is ctl1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testEnv(t, c)
			all := testFacts(t, e, tc.states)
			tc.edit(all)
			err := refuseUnsafe(e, all)
			var healed []string
			for _, f := range e.heal {
				healed = append(healed, f.n.Name)
			}
			if tc.refuse != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refuse) || len(healed) > 0 {
					t.Fatalf("got heal %v, %v; want a refusal with %q", healed, err, tc.refuse)
				}
				return
			}
			if err != nil || strings.Join(healed, ",") != tc.heal {
				t.Fatalf("got heal %v, %v; want heal %s", healed, err, tc.heal)
			}
		})
	}
}

func TestRestartSet(t *testing.T) {
	nodes := []string{"a", "b", "c", "d", "e"}
	for _, tc := range []struct {
		name string
		p    map[string][]string
		want string
	}{
		{"none", map[string][]string{}, ""},
		{"one cut off from all", map[string][]string{"a": {"b", "c", "d", "e"}}, "a"},
		{"two cut off together", map[string][]string{"a": {"c", "d", "e"}, "b": {"c", "d", "e"}}, "a,b"},
		{"even split is no minority in 5: three against two", map[string][]string{"c": {"a", "b"}, "d": {"a", "b"}, "e": {"a", "b"}}, "a,b"},
		{"a single edge, named once", map[string][]string{"c": {"d"}}, "d"},
		{"a single edge, named both ways: a tie", map[string][]string{"c": {"d"}, "d": {"c"}}, ""},
		{"too many cut: no set under half", map[string][]string{"a": {"b", "c", "d", "e"}, "b": {"c", "d", "e"}, "c": {"d", "e"}}, ""},
	} {
		if got := strings.Join(restartSet(nodes, tc.p), ","); got != tc.want {
			t.Errorf("%s: restart %q, want %q", tc.name, got, tc.want)
		}
	}
}

// hangBoot, evaluated on a broker whose application is stopped, starts the
// application and suspends the process that runs its boot (the one in
// rabbit:start/2), from a process that then waits for ever: a suspension
// ends with the process that made it. The boot state stays "booting".
const hangBoot = `erlang:system_flag(backtrace_depth, 40),
Find = fun Find(0) -> none;
           Find(N) ->
               Boot = [P || P <- processes(),
                            {current_stacktrace, S} <- [erlang:process_info(P, current_stacktrace)],
                            lists:any(fun(F) -> element(1, F) =:= rabbit andalso element(2, F) =:= start andalso element(3, F) =:= 2 end, S)],
               case Boot of
                   [P | _] -> erlang:suspend_process(P), P;
                   [] -> timer:sleep(5), Find(N - 1)
               end
       end,
spawn(fun() -> Find(4000), receive after infinity -> ok end end),
spawn(fun() -> rabbit:start() end),
ok.`
