package router

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCoolDown is how long an open circuit refuses traffic before it lets
// a probe through: long enough for a full link queue to drain, short enough
// that a shard that recovered is used again within a heartbeat.
const DefaultCoolDown = time.Second

// CircuitConfig configures Circuits; the zero value means the defaults.
type CircuitConfig struct {
	// CoolDown is how long an open circuit refuses traffic before the next
	// probe; zero means DefaultCoolDown. Negative is invalid.
	CoolDown time.Duration
	// Now is the clock; nil means time.Now. Tests pass a fake clock.
	Now func() time.Time
}

// Validate reports a field out of range.
func (c CircuitConfig) Validate() error {
	if c.CoolDown < 0 {
		return fmt.Errorf("%w: circuit cool-down %v is negative", ErrInvalidConfig, c.CoolDown)
	}
	return nil
}

// Circuits holds one Circuit per backend shard, by shard name. Readers
// (Allow, Get of an existing shard) load an immutable map through an atomic
// pointer: no lock is shared on the hot path. Writers (first Get of a shard,
// Retain) copy the map under a mutex; they run on membership changes, not
// per frame. Callers on the hot path can also keep the *Circuit of their
// link and skip the map altogether.
type Circuits struct {
	clock    *clock
	coolDown int64
	m        atomic.Pointer[map[string]*Circuit] // never nil after NewCircuits
	mu       sync.Mutex                          // serialises writers
	retired  Stats                               // counters of removed circuits; under mu
}

// NewCircuits validates cfg and returns an empty set of circuits.
func NewCircuits(cfg CircuitConfig) (*Circuits, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CoolDown == 0 {
		cfg.CoolDown = DefaultCoolDown
	}
	cs := &Circuits{clock: newClock(cfg.Now), coolDown: int64(cfg.CoolDown)}
	cs.m.Store(&map[string]*Circuit{})
	return cs, nil
}

// Allow reports whether traffic may go to the shard called name. A shard
// without a circuit yet is allowed (its circuit is closed). It allocates
// nothing.
func (cs *Circuits) Allow(name string) bool {
	c := (*cs.m.Load())[name]
	return c == nil || c.Allow()
}

// Lookup returns the circuit of the shard called name, if it has one.
func (cs *Circuits) Lookup(name string) (*Circuit, bool) {
	c, ok := (*cs.m.Load())[name]
	return c, ok
}

// Get returns the circuit of the shard called name, creating it closed.
func (cs *Circuits) Get(name string) *Circuit {
	if c, ok := cs.Lookup(name); ok {
		return c
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	old := *cs.m.Load()
	if c, ok := old[name]; ok {
		return c
	}
	c := &Circuit{clock: cs.clock, coolDown: cs.coolDown}
	next := make(map[string]*Circuit, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = c
	cs.m.Store(&next)
	return c
}

// Retain keeps the circuits of the shards in r (creating the missing ones)
// and drops the others; the counters of dropped circuits, as they were when
// dropped, stay in Totals.
// Call it with each new ring. A circuit handed out earlier for a dropped
// shard keeps working but is no longer reachable by name.
func (cs *Circuits) Retain(r *Ring) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	old := *cs.m.Load()
	var shards []Shard
	if r != nil {
		shards = r.shards
	}
	next := make(map[string]*Circuit, len(shards))
	for _, s := range shards {
		c, ok := old[s.Name]
		if !ok {
			c = &Circuit{clock: cs.clock, coolDown: cs.coolDown}
		}
		next[s.Name] = c
	}
	for name, c := range old {
		if _, ok := next[name]; !ok {
			cs.retired.add(c.Stats())
		}
	}
	cs.m.Store(&next)
}

// Status is one circuit as reported by Snapshot.
type Status struct {
	Shard string // shard name
	State State  // current state
	Stats Stats  // transition counters
}

// Snapshot returns every circuit's status, sorted by shard name (admin API,
// metrics scrape).
func (cs *Circuits) Snapshot() []Status {
	m := *cs.m.Load()
	out := make([]Status, 0, len(m))
	for name, c := range m {
		out = append(out, Status{Shard: name, State: c.State(), Stats: c.Stats()})
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Shard, b.Shard) })
	return out
}

// Totals returns the transition counters summed over every circuit this
// set has held, including dropped ones, so that the sums never go down.
func (cs *Circuits) Totals() Stats {
	cs.mu.Lock()
	t := cs.retired
	m := *cs.m.Load()
	cs.mu.Unlock()
	for _, c := range m {
		t.add(c.Stats())
	}
	return t
}
