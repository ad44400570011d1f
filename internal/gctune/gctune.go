// Package gctune sets the collector's target after every collection from
// the live heap it found, so that a large heap carries little garbage and
// a small one is not collected needlessly often.
//
// Go's GOGC is one ratio for every heap size: the heap grows to live ×
// (1 + GOGC/100) before the next collection. A gateway's live heap is its
// sessions; its garbage comes from netpoll (a closure and a task per read
// event) at a rate set by traffic, not by the number of sessions. With
// a fixed ratio the sessions pay for the garbage in proportion to their
// number (at GOGC 50 half again their live bytes once heartbeats have run
// long enough), while a few busy connections get collected more often
// than they need. The tuner keeps the garbage allowance at
//
//	max(Floor, live × Min/100), at most live × Max/100
//
// that is GOGC = clamp(100 × Floor / live, Min, Max): a gateway with a
// small heap runs at Max, one with a large heap at Min. The cost of a
// collection is proportional to the live heap and the number of
// collections to the garbage rate over the allowance, so the CPU spent
// collecting per byte of garbage is the same as a fixed GOGC of that value;
// what changes is that large heaps pay it to stay close to their live size.
//
// It is the finalizer idiom (as in the Go runtime's own tests and the
// known "GC tuners"): an object whose finalizer runs once per collection,
// sets the percentage and arms a new one.
package gctune

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync/atomic"
)

// Policy is what the tuner aims for.
type Policy struct {
	Floor uint64 // bytes of garbage always allowed between collections
	Min   int    // the smallest GOGC it sets (large heaps)
	Max   int    // the largest GOGC it sets (small heaps)
}

// Percent is the GOGC the policy gives a live heap of live bytes.
func (p Policy) Percent(live uint64) int {
	if live == 0 {
		return p.Max
	}
	pct := p.Floor * 100 / live
	return int(min(max(pct, uint64(p.Min)), uint64(p.Max)))
}

// Tuner applies a Policy after every collection until Stop.
type Tuner struct {
	p       Policy
	stopped atomic.Bool
	last    atomic.Int64 // the GOGC set last
	sample  []rtmetrics.Sample
}

// Start sets GOGC to p.Max at once and re-tunes after every collection.
func Start(p Policy) *Tuner {
	t := &Tuner{p: p, sample: []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.set(p.Max)
	t.arm()
	return t
}

// Stop ends the tuning; the GOGC last set stays.
func (t *Tuner) Stop() { t.stopped.Store(true) }

// Last is the GOGC the tuner set last.
func (t *Tuner) Last() int { return int(t.last.Load()) }

func (t *Tuner) set(pct int) {
	if int64(pct) != t.last.Load() {
		debug.SetGCPercent(pct)
		t.last.Store(int64(pct))
	}
}

// sentinel is the object whose finalizer marks a collection.
type sentinel struct{ t *Tuner }

func (t *Tuner) arm() {
	s := &sentinel{t: t}
	runtime.SetFinalizer(s, func(s *sentinel) { s.t.collected() })
}

// collected runs on the finalizer goroutine after a collection freed the
// sentinel: the live heap it measured is fresh.
func (t *Tuner) collected() {
	if t.stopped.Load() {
		return
	}
	rtmetrics.Read(t.sample)
	if t.sample[0].Value.Kind() == rtmetrics.KindUint64 {
		t.set(t.p.Percent(t.sample[0].Value.Uint64()))
	}
	t.arm()
}
