package router

import (
	"sync"
	"sync/atomic"
)

// Router holds the current ring and the Placer, and swaps in a new ring
// when membership changes. Place and Ring are lock-free (one atomic load);
// Update is serialised by a mutex.
type Router struct {
	cfg    Config
	placer atomic.Pointer[placerBox] // never nil after New; swapped by SetPlacer
	ring   atomic.Pointer[Ring]
	mu     sync.Mutex // serialises Update
}

// placerBox holds a Placer behind one pointer, for the atomic swap.
type placerBox struct{ p Placer }

// New validates cfg and returns a Router with an empty ring (every Place
// returns ErrNoShards until the first Update). A nil placer means Owner.
func New(cfg Config, placer Placer) (*Router, error) {
	empty, err := NewRing(cfg, nil)
	if err != nil {
		return nil, err
	}
	r := &Router{cfg: cfg}
	r.SetPlacer(placer)
	r.ring.Store(empty)
	return r, nil
}

// SetPlacer installs p (nil: Owner) for every Place from now on, e.g. new
// canary rules. The sessions placed under the old Placer stay where they
// are until their owner moves them (the gateway's Rebalance).
func (r *Router) SetPlacer(p Placer) {
	if p == nil {
		p = Owner
	}
	r.placer.Store(&placerBox{p})
}

// Placer returns the current Placer.
func (r *Router) Placer() Placer { return r.placer.Load().p }

// Ring returns the current ring.
func (r *Router) Ring() *Ring { return r.ring.Load() }

// Place returns the shard for a device under the current ring.
func (r *Router) Place(deviceID string, tags map[string]string) (Shard, error) {
	return r.placer.Load().p.Place(deviceID, tags, r.ring.Load())
}

// Placement is Place with the reason: the canary rule that placed the
// device, when the Placer is an Explainer.
func (r *Router) Placement(deviceID string, tags map[string]string) (Placement, error) {
	p, ring := r.placer.Load().p, r.ring.Load()
	if e, ok := p.(Explainer); ok {
		return e.Explain(deviceID, tags, ring)
	}
	s, err := p.Place(deviceID, tags, ring)
	return Placement{Shard: s}, err
}

// Update rebuilds the ring from m's active shards. When the new ring has
// the same fingerprint as the current one nothing changes and changed is
// false; otherwise the new ring is installed and returned with the old one
// (pass both to NewPlan to find the sessions to move). On error the
// current ring stays in place.
func (r *Router) Update(m Membership) (old, cur *Ring, changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old = r.ring.Load()
	next, err := NewRing(r.cfg, m.ActiveShards())
	if err != nil {
		return old, old, false, err
	}
	if next.Fingerprint() == old.Fingerprint() {
		return old, old, false, nil
	}
	r.ring.Store(next)
	return old, next, true, nil
}
