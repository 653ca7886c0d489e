package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

// TestIntegrationRecoverRabbitMQ stops every broker of a real three-node
// RabbitMQ cluster on a lab, one after the other (two stopped, the last
// killed), so that the node that
// stopped last is the only one that could boot without waiting; then that
// node is lost for good (its database wiped: a rebuilt host). 'recover
// rabbitmq' refuses to guess, then with --yes forces the last of the others
// to boot (rabbitmqctl force_boot), starts the rest and joins the rebuilt
// node. Every message published with a confirm before the fault is still
// in its quorum queue, and status is healthy.
func TestIntegrationRecoverRabbitMQ(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: makes a lab and runs the whole layer with a RabbitMQ cluster; runs without -short, as root")
	}
	if os.Geteuid() != 0 {
		t.Fatal("integration tests need root")
	}
	dir, y := testLab(t, "rqrec", "rq", 3, 0, "10.191", "10.192")
	c, ps := spec.Parse([]byte(y))
	if err := ps.Err(); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		t.Helper()
		o, e, code := runIn(t, dir, "", args...)
		t.Logf("hastack %s: exit %d\n%s%s", strings.Join(args, " "), code, o, e)
		return o, e, code
	}
	labDownAfter(t, dir)
	if _, _, code := run("lab", "up"); code != 0 {
		t.Fatal("lab up failed")
	}
	if _, _, code := run("up"); code != 0 {
		t.Fatal("up failed")
	}
	store, err := secrets.Open(secrets.PathFor(filepath.Join(dir, "hastack.yaml")), c.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Spec.RabbitMQ
	ctls := c.Controllers()
	url := func(n spec.Node) string {
		return fmt.Sprintf("amqp://%s:%s@%s/%s", r.User, store.Get(secrets.RabbitServicePassword), net.JoinHostPort(n.Address, strconv.Itoa(r.Port)), strings.TrimPrefix(r.VHost, "/"))
	}
	const queue = "hastack.recover.test"
	// publish publishes ids [from, to) with confirms through n: a
	// confirmed message lives on a majority of the quorum queue's members.
	publish := func(n spec.Node, from, to int) {
		t.Helper()
		conn, err := amqp.Dial(url(n))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
			t.Fatal(err)
		}
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i := from; i < to; i++ {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: strconv.Itoa(i), Body: []byte("m" + strconv.Itoa(i))})
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := dc.WaitContext(ctx); err != nil || !ok {
				t.Fatalf("message %d not confirmed: %v", i, err)
			}
		}
	}
	// readAll reads the queue empty through n and fails the test unless
	// every id of [from, to) was there. A client whose call fails connects
	// again, as services do.
	readAll := func(n spec.Node, from, to int) {
		t.Helper()
		seen := map[string]bool{}
		var conn *amqp.Connection
		var ch *amqp.Channel
		var err error
		defer func() {
			if conn != nil {
				conn.Close()
			}
		}()
		readStart := time.Now()
		for deadline := time.Now().Add(90 * time.Second); ; {
			if ch == nil {
				if conn != nil {
					conn.Close()
				}
				if conn, err = amqp.Dial(url(n)); err == nil {
					ch, err = conn.Channel()
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			m, ok, err := ch.Get(queue, true)
			if err != nil {
				t.Logf("basic.get after %s: %v", time.Since(readStart).Round(time.Millisecond), err)
				if time.Now().After(deadline) {
					t.Fatal("the queue does not answer")
				}
				ch = nil
				time.Sleep(time.Second)
				continue
			}
			if !ok {
				break
			}
			seen[m.MessageId] = true
		}
		t.Logf("read %d messages through %s in %s", len(seen), n.Name, time.Since(readStart).Round(time.Millisecond))
		var lost []string
		for i := from; i < to; i++ {
			if !seen[strconv.Itoa(i)] {
				lost = append(lost, strconv.Itoa(i))
			}
		}
		if len(lost) > 0 {
			t.Fatalf("%d of %d confirmed messages lost: %v", len(lost), to-from, lost)
		}
	}
	publish(ctls[0], 0, 200)

	exec := func(n string, argv ...string) (string, int) {
		t.Helper()
		o, _, code := runIn(t, dir, "", append([]string{"lab", "exec", n, "--"}, argv...)...)
		return strings.TrimSpace(o), code
	}
	runningAtShutdown := func(n string) string {
		o, _ := exec(n, "cat", "/var/lib/rabbitmq/mnesia/rabbit@"+n+"/nodes_running_at_shutdown")
		return o
	}
	brokerDown := func(n string) bool {
		_, code := exec(n, "pgrep", "-f", "beam.smp")
		return code != 0
	}
	kill := func(n string) {
		t.Helper()
		if _, _, code := runIn(t, dir, "", "lab", "fault", "kill", n, "rabbitmq"); code != 0 {
			t.Fatalf("kill rabbitmq on %s failed", n)
		}
		for deadline := time.Now().Add(30 * time.Second); !brokerDown(n); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("rabbitmq on %s outlived its kill", n)
			}
		}
	}
	// waitSeen waits until ctl1 no longer lists n among the running members.
	waitSeen := func(n string) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); strings.Contains(runningAtShutdown("ctl1"), "rabbit@"+n); time.Sleep(500 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("ctl1 still lists %s running: %s", n, runningAtShutdown("ctl1"))
			}
		}
	}
	stop := func(n string) {
		t.Helper()
		if _, code := exec(n, "rabbitmqctl", "stop"); code != 0 {
			t.Fatalf("rabbitmqctl stop on %s failed", n)
		}
		for deadline := time.Now().Add(60 * time.Second); !brokerDown(n); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("rabbitmq on %s still runs after its stop", n)
			}
		}
	}
	// ctl3, then ctl2 stopped (maintenance), then ctl1 killed (its power
	// lost): ctl1 stops last, having seen the others stop; ctl2 last saw
	// ctl1 running, ctl3 all of them. The first two stop cleanly: RabbitMQ
	// 3.10 can lose a quorum queue member's registration when every
	// member is killed (docs/limits.md), which no recovery can mend.
	stop("ctl3")
	waitSeen("ctl3")
	stop("ctl2")
	waitSeen("ctl2")
	kill("ctl1")
	for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
		t.Logf("%s: nodes_running_at_shutdown %s", n, runningAtShutdown(n))
	}
	// ctl1 is lost for good: rebuilt, its database gone.
	if _, code := exec("ctl1", "sh", "-c", "rm -rf /var/lib/rabbitmq/mnesia/rabbit@ctl1*"); code != 0 {
		t.Fatal("wiping ctl1 failed")
	}

	// No guess: ctl2 and ctl3 wait for ctl1 at boot, which only the
	// operator can declare gone. Nothing is started.
	_, e, code := run("recover", "rabbitmq")
	if code != 1 || !strings.Contains(e, "wait at boot for rabbit@ctl1") || !strings.Contains(e, "recover rabbitmq --yes' forces ctl2") {
		t.Fatalf("recover with the last node to stop wiped: exit %d, want a refusal naming ctl1 and the remedy", code)
	}
	for _, n := range []string{"ctl1", "ctl2", "ctl3"} {
		if !brokerDown(n) {
			t.Errorf("%s runs a broker after a refused recovery", n)
		}
	}
	// Confirmed: ctl2 (the last of the others to stop) is forced to boot,
	// ctl3 loads from it, the rebuilt ctl1 joins.
	o, _, code := run("recover", "rabbitmq", "--yes")
	if code != 0 || !strings.Contains(o, "[rabbitmq] ctl2: is forced to boot first (rabbitmqctl force_boot)") || !strings.Contains(o, "[rabbitmq] ctl1: start rabbitmq-server (rabbit@ctl1); wait until it joins") {
		t.Fatalf("recover --yes: exit %d", code)
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(2 * time.Second) {
		o, _, code = runIn(t, dir, "", "status")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after the recovery: exit %d\n%s", code, o)
		}
	}

	// Every confirmed message is there, read through ctl3.
	readAll(ctls[2], 0, 200)

	// A member that still answers is not forgotten.
	if _, e, code := run("recover", "rabbitmq", "--forget", "ctl3"); code != 1 || !strings.Contains(e, "ctl3 still answers") {
		t.Errorf("--forget of a running member: exit %d, want a refusal", code)
	}
	// ctl3 lost for good, its broker stopped: forgotten, its database
	// moved aside; the next recover starts it as a new member and grows
	// the quorum queue onto it. Messages confirmed before are all there.
	publish(ctls[0], 200, 250)
	stop("ctl3")
	o, _, code = run("recover", "rabbitmq", "--forget", "ctl3")
	if code != 0 || !strings.Contains(o, "rabbitmqctl forget_cluster_node rabbit@ctl3") || !strings.Contains(o, "move rabbit@ctl3's database aside") {
		t.Fatalf("--forget ctl3: exit %d", code)
	}
	o, _, code = run("recover", "rabbitmq")
	if code != 0 || !strings.Contains(o, "rabbitmq-queues grow rabbit@ctl3 all") {
		t.Fatalf("recover after the forget: exit %d, want ctl3 started and the queue grown onto it", code)
	}
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(2 * time.Second) {
		o, _, code = runIn(t, dir, "", "status")
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after the rejoin: exit %d\n%s", code, o)
		}
	}
	readAll(ctls[2], 200, 250)
	// Healthy: nothing to do.
	if o, _, code := run("recover", "rabbitmq"); code != 0 || !strings.Contains(o, "nothing to do") {
		t.Errorf("recover on a healthy cluster: exit %d", code)
	}

	// 'node replace': ctl2 is lost for good and rebuilt under its name,
	// its state deleted. Acknowledged database writes and confirmed
	// messages from before are all there afterwards, read through ctl2.
	sql := func(n, stmt string) (string, int) { return exec(n, "mariadb", "-N", "-B", "-e", stmt) }
	if _, code := sql("ctl1", "CREATE DATABASE rp; CREATE TABLE rp.acked (id INT PRIMARY KEY)"); code != 0 {
		t.Fatal("create table failed")
	}
	for i := range 50 {
		if _, code := sql("ctl1", fmt.Sprintf("INSERT INTO rp.acked VALUES (%d)", i)); code != 0 {
			t.Fatalf("insert %d refused", i)
		}
	}
	publish(ctls[0], 300, 350)
	// Bad input changes nothing: no such node; a healthy member that still
	// holds its data, without --yes.
	if _, e, code := run("node", "replace", "ctl9"); code != 2 || !strings.Contains(e, `no node "ctl9" in the spec`) {
		t.Errorf("node replace ctl9: exit %d, want 2 naming the nodes", code)
	}
	if _, e, code := run("node", "replace", "ctl3"); code != 1 || !strings.Contains(e, "ctl3 still holds") || !strings.Contains(e, "--yes") {
		t.Errorf("node replace of a healthy member without --yes: exit %d, want a refusal", code)
	}
	if o, _, code := runIn(t, dir, "", "status"); code != 0 {
		t.Fatalf("status after the refused replacement: exit %d\n%s", code, o)
	}
	// ctl2 dies and comes back rebuilt: no broker, no database, no data.
	for _, svc := range []string{"rabbitmq", "mariadb"} {
		if _, _, code := runIn(t, dir, "", "lab", "fault", "kill", "ctl2", svc); code != 0 {
			t.Fatalf("kill %s on ctl2 failed", svc)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, b := exec("ctl2", "pgrep", "-f", "beam.smp")
		_, m := exec("ctl2", "pgrep", "-x", "mariadbd")
		if b != 0 && m != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ctl2's engines outlived their kill")
		}
	}
	if _, code := exec("ctl2", "sh", "-c", "rm -rf /var/lib/mysql/* /var/lib/rabbitmq/mnesia/rabbit@ctl2*"); code != 0 {
		t.Fatal("wiping ctl2 failed")
	}
	o, _, code = run("node", "replace", "ctl2")
	sent := regexp.MustCompile(`rejoined as a new member in \S+ \(database sent by (ctl\d)\)`).FindStringSubmatch(o)
	if code != 0 || sent == nil {
		t.Fatalf("node replace ctl2: exit %d, want it rejoined with the donor named", code)
	}
	st, _, code := runIn(t, dir, "", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("status after the replacement: exit %d\n%s", code, st)
	}
	var rep struct{ Writer string }
	if err := json.Unmarshal([]byte(st), &rep); err != nil || rep.Writer == "" {
		t.Fatalf("status -o json: writer %q, %v", rep.Writer, err)
	}
	if sent[1] == rep.Writer || sent[1] == "ctl2" {
		t.Errorf("the database was sent by %s; the writer is %s: want another controller", sent[1], rep.Writer)
	}
	if got, _ := sql("ctl2", "SELECT COUNT(*) FROM rp.acked"); got != "50" {
		t.Errorf("ctl2 holds %q of 50 acknowledged writes after its replacement", got)
	}
	readAll(ctls[1], 300, 350)

	// Membership. ctl3 leaves and comes back, with acknowledged writes and
	// confirmed messages accounted for at each step, and bad input refused
	// with the spec file unchanged.
	specPath := filepath.Join(dir, "hastack.yaml")
	specNow := func() string {
		t.Helper()
		b, err := os.ReadFile(specPath)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	unchanged := func(what, before string) {
		t.Helper()
		if specNow() != before {
			t.Errorf("%s changed the spec file", what)
		}
	}
	publish(ctls[0], 400, 450)
	threeNodes := specNow()
	if _, e, code := run("node", "remove", "ctl3"); code != 1 || !strings.Contains(e, "pause_minority on 2 nodes") {
		t.Errorf("node remove ctl3 under pause_minority: exit %d, want a refusal naming it", code)
	}
	unchanged("a refused removal", threeNodes)
	if err := os.WriteFile(specPath, []byte(strings.Replace(threeNodes, "partitionHandling: pause_minority", "partitionHandling: autoheal", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, code := run("up"); code != 0 {
		t.Fatal("up with autoheal failed")
	}
	o, _, code = run("node", "remove", "ctl3")
	if code != 0 || !strings.Contains(o, "ctl3 left the cluster and the spec") {
		t.Fatalf("node remove ctl3: exit %d", code)
	}
	if strings.Contains(specNow(), "name: ctl3") {
		t.Error("ctl3 is still in the spec after its removal")
	}
	var after struct {
		Healthy  bool
		Services struct{ Galera, RabbitMQ []struct{ Node string } }
	}
	healthyWith := func(want int) {
		t.Helper()
		st, _, code := runIn(t, dir, "", "status", "-o", "json")
		if err := json.Unmarshal([]byte(st), &after); err != nil || code != 0 || !after.Healthy {
			t.Fatalf("status: exit %d, %v\n%s", code, err, st)
		}
		if len(after.Services.Galera) != want || len(after.Services.RabbitMQ) != want {
			t.Errorf("status lists %d Galera and %d RabbitMQ nodes, want %d", len(after.Services.Galera), len(after.Services.RabbitMQ), want)
		}
	}
	healthyWith(2)
	if _, code := exec("ctl3", "pgrep", "-x", "mariadbd"); code == 0 {
		t.Error("mariadbd still runs on the removed ctl3")
	}
	if got, _ := sql("ctl1", "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='WSREP_CLUSTER_SIZE'"); got != "2" {
		t.Errorf("Galera cluster size after the removal: %q, want 2", got)
	}
	if got, _ := sql("ctl2", "SELECT COUNT(*) FROM rp.acked"); got != "50" {
		t.Errorf("ctl2 holds %q of 50 acknowledged writes after ctl3's removal", got)
	}
	twoNodes := specNow()
	if _, e, code := run("node", "remove", "ctl2"); code != 1 || !strings.Contains(e, "keeps at least 2") {
		t.Errorf("node remove of one of the last 2 controllers: exit %d, want a refusal", code)
	}
	unchanged("a refused removal", twoNodes)
	if _, e, code := run("node", "add", "ctl3", "--address", ctls[1].Address, "--network-address", "provider="+ctls[2].Interfaces[1].Address); code != 1 || !strings.Contains(e, "duplicate") {
		t.Errorf("node add with ctl2's address: exit %d, want a refusal naming the clash", code)
	}
	unchanged("a refused addition", twoNodes)
	o, _, code = run("node", "add", "ctl3", "--address", ctls[2].Address, "--network-address", "provider="+ctls[2].Interfaces[1].Address)
	if code != 0 || !strings.Contains(o, "ctl3 joined") {
		t.Fatalf("node add ctl3: exit %d", code)
	}
	healthyWith(3)
	if got, _ := sql("ctl3", "SELECT COUNT(*) FROM rp.acked"); got != "50" {
		t.Errorf("ctl3 holds %q of 50 acknowledged writes after it was added back", got)
	}
	if o, _, code := run("node", "add", "ctl3"); code != 0 || !strings.Contains(o, "nothing to do") {
		t.Errorf("node add of a member: exit %d, want nothing to do", code)
	}
	readAll(ctls[2], 400, 450)
}
