// Package serve is 'hastack serve': the combined health view of 'status'
// served over HTTP, as Prometheus metrics (/metrics), as the status JSON
// (/status) and as a small page that refreshes itself (/). Every request
// is answered from one shared probe round: concurrent scrapes wait for the
// round in flight instead of starting their own, and a round younger than
// MaxAge is reused, so the engines are never probed more than once per
// MaxAge however many scrapers there are.
package serve

import (
	"context"
	"sync"
	"time"

	"github.com/hastack/hastack/internal/status"
)

// CollectFunc probes the cluster once; it must honour ctx's deadline.
type CollectFunc func(ctx context.Context) status.Report

// Round is one probe round's result.
type Round struct {
	Report status.Report
	// At is when the round finished.
	At time.Time
	// Took is how long the round took.
	Took time.Duration
}

// Prober shares probe rounds between concurrent requests.
type Prober struct {
	collect CollectFunc
	maxAge  time.Duration
	timeout time.Duration
	now     func() time.Time

	mu       sync.Mutex
	last     *Round
	inflight chan struct{} // closed when the round in flight ends
	rounds   int
}

// NewProber shares rounds of collect: a round is reused for maxAge (at most
// 1 s is sensible: it is a health view) and bounded by timeout.
func NewProber(collect CollectFunc, maxAge, timeout time.Duration) *Prober {
	return &Prober{collect: collect, maxAge: maxAge, timeout: timeout, now: time.Now}
}

// Rounds is how many probe rounds were run, for tests and the metrics.
func (p *Prober) Rounds() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rounds
}

// Get returns a round no older than maxAge: the last one, the one in
// flight, or a new one. The round runs with its own deadline (timeout),
// not the caller's: a scraper that gives up does not cut the round short
// for the others. A caller whose ctx ends first gets ctx's error.
func (p *Prober) Get(ctx context.Context) (Round, error) {
	for {
		p.mu.Lock()
		if p.last != nil && p.now().Sub(p.last.At) <= p.maxAge {
			r := *p.last
			p.mu.Unlock()
			return r, nil
		}
		wait := p.inflight
		if wait == nil {
			wait = make(chan struct{})
			p.inflight = wait
			p.rounds++
			go p.run(wait)
		}
		p.mu.Unlock()
		select {
		case <-wait:
			p.mu.Lock()
			r := p.last
			p.mu.Unlock()
			if r != nil {
				return *r, nil
			}
		case <-ctx.Done():
			return Round{}, ctx.Err()
		}
	}
}

func (p *Prober) run(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	start := p.now()
	rep := p.collect(ctx)
	end := p.now()
	p.mu.Lock()
	p.last = &Round{Report: rep, At: end, Took: end.Sub(start)}
	p.inflight = nil
	p.mu.Unlock()
	close(done)
}
