package drill

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// MQOptions place the message workload: every broker's URL, as services
// list them, and the queue.
type MQOptions struct {
	URLs []string
	// Nodes names the node of each URL; the drill puts the target's first,
	// so that the clients start on the node that fails (the worst case).
	Nodes []string
	Queue string
	// Quorum declares a quorum queue; else a durable classic queue (the
	// spec's mirrored policy applies to it).
	Quorum bool
	Pause  time.Duration
	// ConfirmTimeout bounds the wait for a publisher confirm.
	ConfirmTimeout time.Duration
}

// MQ is the message workload: a publisher with confirms and a consumer with
// manual acks, each on its own connection, each moving to the next broker
// when its connection fails. Every confirmed message must be delivered at
// least once; duplicates are counted.
type MQ struct {
	o     MQOptions
	rec   *Recorder
	nonce string

	mu        sync.Mutex
	delivered []string
	seen      map[string]bool
	lastDeliv time.Time
	resubs    int
}

// TargetFirst returns the options with the target's broker first.
func (o MQOptions) TargetFirst(target string) MQOptions {
	for i, n := range o.Nodes {
		if n == target && i < len(o.URLs) {
			o.URLs = append(append([]string{o.URLs[i]}, o.URLs[:i]...), o.URLs[i+1:]...)
			o.Nodes = append(append([]string{n}, o.Nodes[:i]...), o.Nodes[i+1:]...)
			break
		}
	}
	return o
}

func (o MQOptions) withDefaults() MQOptions {
	if o.Queue == "" {
		o.Queue = "hastack-drill"
	}
	if o.Pause == 0 {
		o.Pause = 20 * time.Millisecond
	}
	if o.ConfirmTimeout == 0 {
		o.ConfirmTimeout = 5 * time.Second
	}
	return o
}

func dial(url string) (*amqp.Connection, error) {
	return amqp.DialConfig(url, amqp.Config{Heartbeat: 5 * time.Second, Dial: amqp.DefaultDial(time.Second)})
}

// closeSoon closes a connection without waiting on a broker that may not
// answer.
func closeSoon(c *amqp.Connection) {
	if c != nil {
		go c.CloseDeadline(time.Now().Add(time.Second))
	}
}

func (m *MQ) declare(ch *amqp.Channel) error {
	var args amqp.Table
	if m.o.Quorum {
		args = amqp.Table{"x-queue-type": "quorum"}
	}
	_, err := ch.QueueDeclare(m.o.Queue, true, false, false, false, args)
	return err
}

// NewMQ deletes and declares the queue through the first broker that
// answers.
func NewMQ(ctx context.Context, o MQOptions, rec *Recorder) (*MQ, error) {
	o = o.withDefaults()
	m := &MQ{o: o, rec: rec, seen: map[string]bool{}, nonce: strconv.FormatInt(time.Now().UnixNano()%1e9, 36)}
	var errs []error
	for _, u := range o.URLs {
		c, err := dial(u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ch, err := c.Channel()
		if err == nil {
			_, _ = ch.QueueDelete(o.Queue, false, false, false)
			err = m.declare(ch)
		}
		closeSoon(c)
		if err == nil {
			return m, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("message workload setup: no broker declared queue %s: %w", o.Queue, errors.Join(errs...))
}

// Publish publishes with confirms until ctx ends.
func (m *MQ) Publish(ctx context.Context) {
	var conn *amqp.Connection
	var ch *amqp.Channel
	next := 0
	seq := 0
	reset := func() {
		closeSoon(conn)
		conn, ch = nil, nil
	}
	defer reset()
	for ctx.Err() == nil {
		id := fmt.Sprintf("%s-%d", m.nonce, seq)
		seq++
		start := m.rec.Begin()
		if ch == nil {
			c, err := dial(m.o.URLs[next%len(m.o.URLs)])
			next++
			if err == nil {
				var chn *amqp.Channel
				if chn, err = c.Channel(); err == nil {
					if err = chn.Confirm(false); err == nil {
						err = m.declare(chn)
					}
				}
				if err != nil {
					closeSoon(c)
				} else {
					conn, ch = c, chn
				}
			}
			if err != nil {
				m.rec.Done(start, Failed, "connect", id, 0)
				sleepCtx(ctx, 200*time.Millisecond)
				continue
			}
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", m.o.Queue, false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, MessageId: id, Body: []byte(id),
		})
		if err != nil {
			// Not handed to the broker.
			m.rec.Done(start, Failed, "publish", id, 0)
			reset()
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, m.o.ConfirmTimeout)
		acked, err := dc.WaitContext(wctx)
		cancel()
		switch {
		case err == nil && acked:
			m.rec.Done(start, OK, "", id, 0)
		case err == nil:
			// A nack: the broker could not take it. The next publish goes
			// out on a new connection (the next broker): a channel of
			// RabbitMQ 3.10 can go on nacking every publish to a quorum
			// queue whose leader's node became unreachable, while a new
			// channel on the same broker is confirmed at once (seen in
			// session 10).
			m.rec.Done(start, Failed, "nack", id, 0)
			reset()
		case ctx.Err() != nil:
			m.rec.Done(start, Blocked, "blocked", id, 0)
		case errors.Is(err, context.DeadlineExceeded):
			m.rec.Done(start, Unknown, "confirm timeout", id, 0)
			reset()
		default:
			m.rec.Done(start, Unknown, "connection lost", id, 0)
			reset()
		}
		sleepCtx(ctx, m.o.Pause)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Consume subscribes with manual acks and subscribes again, on the next
// broker, whenever the subscription ends or goes silent while messages
// are being confirmed.
func (m *MQ) Consume(ctx context.Context) {
	next := 0
	for first := true; ctx.Err() == nil; first = false {
		if !first {
			m.mu.Lock()
			m.resubs++
			m.mu.Unlock()
			sleepCtx(ctx, 200*time.Millisecond)
		}
		c, err := dial(m.o.URLs[next%len(m.o.URLs)])
		next++
		if err != nil {
			continue
		}
		ch, err := c.Channel()
		var deliveries <-chan amqp.Delivery
		if err == nil {
			if err = ch.Qos(200, 0, false); err == nil {
				if err = m.declare(ch); err == nil {
					deliveries, err = ch.Consume(m.o.Queue, "", false, false, false, false, nil)
				}
			}
		}
		if err != nil {
			closeSoon(c)
			continue
		}
		m.mu.Lock()
		m.lastDeliv = time.Now()
		m.mu.Unlock()
		m.receive(ctx, deliveries)
		closeSoon(c)
	}
}

// receive takes deliveries until the channel closes, ctx ends, or nothing
// arrives for 10 s while the publisher has confirmed newer messages.
func (m *MQ) receive(ctx context.Context, deliveries <-chan amqp.Delivery) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			id := d.MessageId
			if id == "" {
				id = string(d.Body)
			}
			m.mu.Lock()
			m.delivered = append(m.delivered, id)
			m.seen[id] = true
			m.lastDeliv = time.Now()
			m.mu.Unlock()
			_ = d.Ack(false)
		case <-tick.C:
			m.mu.Lock()
			silent := time.Since(m.lastDeliv) > 10*time.Second
			m.mu.Unlock()
			if silent && m.pending() > 0 {
				return
			}
		}
	}
}

// pending counts confirmed messages not delivered yet.
func (m *MQ) pending() int {
	n := 0
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.rec.Ops() {
		if o.Outcome == OK && !m.seen[o.ID] {
			n++
		}
	}
	return n
}

// WaitDrained waits until every confirmed message has been delivered, or
// nothing new arrived for quiet, or ctx ends.
func (m *MQ) WaitDrained(ctx context.Context, quiet time.Duration) {
	for ctx.Err() == nil && m.pending() > 0 {
		m.mu.Lock()
		idle := time.Since(m.lastDeliv)
		m.mu.Unlock()
		if idle > quiet {
			return
		}
		sleepCtx(ctx, 200*time.Millisecond)
	}
}

// Verify compares confirmed messages with deliveries.
func (m *MQ) Verify() WorkloadRecord {
	ops := m.rec.Ops()
	m.mu.Lock()
	delivered := append([]string(nil), m.delivered...)
	resubs := m.resubs
	m.mu.Unlock()
	q := &MQLoss{Delivered: len(delivered), Resubs: resubs, Verified: true}
	q.Confirmed, q.Unknown, q.Duplicates, q.Lost = MessageCheck(ops, delivered)
	return WorkloadRecord{Name: "mq", Ops: ops, MQ: q}
}

// RPCQueues are the queues the rpc workload's oslo.messaging server
// declares (topic and server); the drill deletes them with its own.
var RPCQueues = []string{"hastack_drill_rpc", "hastack_drill_rpc.drill"}

// Close deletes the workload's queue and the rpc workload's queues.
func (m *MQ) Close() {
	for _, q := range append([]string{m.o.Queue}, RPCQueues...) {
		for _, u := range m.o.URLs {
			c, err := dial(u)
			if err != nil {
				continue
			}
			ch, err := c.Channel()
			if err == nil {
				_, err = ch.QueueDelete(q, false, false, false)
			}
			closeSoon(c)
			if err == nil {
				break
			}
		}
	}
}
