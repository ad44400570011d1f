package router

import (
	"sync/atomic"
	"time"
)

// State is the state of a shard's circuit.
type State uint8

// Circuit states.
//
//	         Trip                cool-down over: Allow lets one probe through
//	Closed ───────▶ Open ─────────────────────────────▶ HalfOpen
//	  ▲              ▲                                     │ │
//	  │              └───────────── Trip ──────────────────┘ │
//	  └─────────────────────────── Success ──────────────────┘
const (
	// Closed: traffic flows to the shard.
	Closed State = iota
	// Open: the shard's link queue is full or the link is down; Allow
	// refuses until the cool-down is over.
	Open
	// HalfOpen: the cool-down is over and one probe was let through;
	// Success closes the circuit, Trip opens it again. If the probe's fate
	// is never reported, another probe is allowed one cool-down later.
	HalfOpen
)

// String returns the state's name, as used in metrics and the admin API.
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Reason says why a circuit was tripped.
type Reason uint8

// Trip reasons.
const (
	// QueueFull: the link's send queue to the shard is full.
	QueueFull Reason = iota + 1
	// LinkDown: no link to the shard is up.
	LinkDown
)

// String returns the reason's name.
func (r Reason) String() string {
	switch r {
	case QueueFull:
		return "queue_full"
	case LinkDown:
		return "link_down"
	}
	return "none"
}

// Stats counts a circuit's transitions since it was created. Every field
// only grows, so each maps to a Prometheus counter.
type Stats struct {
	Opened     uint64 // Closed → Open
	HalfOpened uint64 // Open → HalfOpen (a probe after the cool-down)
	Reclosed   uint64 // HalfOpen → Closed (the probe succeeded)
	Reopened   uint64 // HalfOpen → Open (the probe failed)
	Probes     uint64 // probes allowed in HalfOpen, including retries
	QueueFull  uint64 // trips for QueueFull that changed the state
	LinkDown   uint64 // trips for LinkDown that changed the state
}

// add adds o to s.
func (s *Stats) add(o Stats) {
	s.Opened += o.Opened
	s.HalfOpened += o.HalfOpened
	s.Reclosed += o.Reclosed
	s.Reopened += o.Reopened
	s.Probes += o.Probes
	s.QueueFull += o.QueueFull
	s.LinkDown += o.LinkDown
}

// Circuit is one shard's circuit breaker. Its state and the time of its
// last transition live in one atomic word, so every transition is a single
// compare-and-swap, counted exactly once, with no lock. Allow and Success
// on a closed circuit are one atomic load each.
type Circuit struct {
	word     atomic.Uint64 // state<<stateShift | nanoseconds since clock base
	clock    *clock
	coolDown int64
	stats    struct {
		opened, halfOpened, reclosed, reopened, probes, queueFull, linkDown atomic.Uint64
	}
}

const (
	stateShift = 62
	timeMask   = 1<<stateShift - 1
)

func pack(s State, t int64) uint64 { return uint64(s)<<stateShift | uint64(t)&timeMask }
func stateOf(w uint64) State       { return State(w >> stateShift) }
func timeOf(w uint64) int64        { return int64(w & timeMask) }

// State returns the circuit's current state.
func (c *Circuit) State() State { return stateOf(c.word.Load()) }

// Allow reports whether a frame may be sent to the shard: always when
// closed, never while open and cooling down, once per cool-down after that
// (the probe, which moves the circuit to HalfOpen). It allocates nothing.
func (c *Circuit) Allow() bool {
	w := c.word.Load()
	if stateOf(w) == Closed {
		return true
	}
	now := c.clock.now()
	if now-timeOf(w) < c.coolDown {
		return false
	}
	if !c.word.CompareAndSwap(w, pack(HalfOpen, now)) {
		return false // another caller took the probe, or the state changed
	}
	if stateOf(w) == Open {
		c.stats.halfOpened.Add(1)
	}
	c.stats.probes.Add(1)
	return true
}

// Trip opens the circuit because of r: from Closed (link queue full, link
// down) or from HalfOpen (the probe failed). Tripping an open circuit
// changes nothing; in particular it does not extend the cool-down.
func (c *Circuit) Trip(r Reason) {
	for {
		w := c.word.Load()
		s := stateOf(w)
		if s == Open {
			return
		}
		if !c.word.CompareAndSwap(w, pack(Open, c.clock.now())) {
			continue
		}
		if s == Closed {
			c.stats.opened.Add(1)
		} else {
			c.stats.reopened.Add(1)
		}
		switch r {
		case QueueFull:
			c.stats.queueFull.Add(1)
		case LinkDown:
			c.stats.linkDown.Add(1)
		}
		return
	}
}

// Success reports that a frame reached the shard's link. It closes a
// half-open circuit; on a closed circuit it is one atomic load. A success
// while open (a frame sent before the trip) is ignored: only a probe after
// the cool-down closes the circuit.
func (c *Circuit) Success() {
	w := c.word.Load()
	if stateOf(w) != HalfOpen {
		return
	}
	if c.word.CompareAndSwap(w, pack(Closed, 0)) {
		c.stats.reclosed.Add(1)
	}
}

// Reset closes the circuit at once: a new link to the shard has just
// authenticated, which is a better probe than one frame after the
// cool-down (a shard restarted under its name would otherwise refuse
// every frame but the probe until it went through). Counted as reclosed.
func (c *Circuit) Reset() {
	for {
		w := c.word.Load()
		if stateOf(w) == Closed {
			return
		}
		if c.word.CompareAndSwap(w, pack(Closed, 0)) {
			c.stats.reclosed.Add(1)
			return
		}
	}
}

// Stats returns the circuit's transition counters.
func (c *Circuit) Stats() Stats {
	return Stats{
		Opened:     c.stats.opened.Load(),
		HalfOpened: c.stats.halfOpened.Load(),
		Reclosed:   c.stats.reclosed.Load(),
		Reopened:   c.stats.reopened.Load(),
		Probes:     c.stats.probes.Load(),
		QueueFull:  c.stats.queueFull.Load(),
		LinkDown:   c.stats.linkDown.Load(),
	}
}

// clock measures time in nanoseconds since its base plus one, so that a
// transition time is never zero (the time of a closed circuit) and
// differences stay exact.
type clock struct {
	read func() time.Time
	base time.Time
}

func newClock(now func() time.Time) *clock {
	if now == nil {
		now = time.Now
	}
	return &clock{read: now, base: now()}
}

func (k *clock) now() int64 {
	return max(int64(k.read().Sub(k.base)), 0) + 1
}
