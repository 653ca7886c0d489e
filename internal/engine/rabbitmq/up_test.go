package rabbitmq

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// runSteps runs a phase's steps wave by wave, the steps of a wave in
// parallel, as deploy does.
func runSteps(t *testing.T, ctx context.Context, steps []plan.Step) {
	t.Helper()
	for _, wave := range plan.Waves(steps) {
		errs := make([]error, len(wave))
		var wg sync.WaitGroup
		for i, s := range wave {
			wg.Go(func() {
				t0 := time.Now()
				t.Logf("wave %d: %s: %s", s.Wave, s.Host, s.Action)
				if err := s.Do(ctx); err != nil {
					errs[i] = fmt.Errorf("%s: %s: %w", s.Host, s.Action, err)
					return
				}
				t.Logf("wave %d: %s: done in %s", s.Wave, s.Host, time.Since(t0).Round(time.Millisecond))
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
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
	tg := &plan.Target{Cluster: c, Nodes: map[string]node.Node{}, Secrets: store, SharedClock: true,
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
