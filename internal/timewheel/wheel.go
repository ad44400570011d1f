package timewheel

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Default geometry: 10 ms ticks, 2^12 slots, so one lap is about 41 s.
// Deadlines further out than a lap stay in their slot and are skipped until
// their lap comes round.
const (
	DefaultTick  = 10 * time.Millisecond
	DefaultSlots = 1 << 12
)

// Expirer is told that its entry's deadline passed.
type Expirer interface {
	Expire(e *Entry)
}

// Entry is one deadline, embedded in the struct that owns it. The zero value
// is an unscheduled entry. An Entry belongs to one wheel at a time.
type Entry struct {
	prev, next *Entry
	at         int64 // deadline, in wheel ticks
	linked     bool
	far        bool // linked in the far level (see ScheduleAt)
	Owner      Expirer
}

// Scheduled reports whether e is waiting in the wheel.
func (e *Entry) Scheduled() bool { return e.linked }

// Wheel is a hashed timing wheel; see the package comment.
type Wheel struct {
	tick  time.Duration
	epoch time.Time

	mu     sync.Mutex
	slots  []Entry // sentinel heads of circular lists: this lap's deadlines
	shift  uint    // log2(len(slots)): tick >> shift is the tick's lap
	far    []Entry // sentinel heads: later laps' deadlines, by lap (see ScheduleAt)
	nFar   int     // entries in far
	n      int     // entries in the wheel
	cur    int64   // last tick swept
	wakeAt int64   // while asleep: the tick the sweeper's timer is set for (under mu)
	now    atomic.Int64

	// asleep is set while the sweeper sleeps past the next tick (see run);
	// Now then reads the real clock, and wakes it only for a burst of
	// reads (sleptAt, sleepReads).
	asleep     atomic.Bool
	sleptAt    atomic.Int64  // the tick the sweeper fell asleep in
	sleepReads atomic.Int64  // Now calls since
	stay       atomic.Bool   // the next wake keeps the sweeper awake (wakeUp)
	wake       chan struct{} // cap 1: pokes a sleeping sweeper

	onTick  func() bool
	stop    chan struct{}
	done    chan struct{}
	started atomic.Bool
}

// awakeTicks is how long the sweeper stays awake after something woke it
// (1 s at the default tick).
const awakeTicks = 100

// burstReads is the rate of Now calls, per tick since the sweeper fell
// asleep, past which Now wakes it: a gateway with traffic reads Now per
// frame, and a clock read per frame would cost more than the ticks it
// saves, while a quiet one (heartbeats) reads it now and then and lets
// the sweeper sleep. The rate is taken over the sleep so far plus
// awakeTicks, so that a short burst (a few dozen devices' heartbeats
// arriving together) does not buy a second of ticks: it is sustained
// traffic that wakes the sweeper, within a fraction of a second.
const burstReads = 4

// farSlots is the number of laps the far level spans (64 laps of 41 s at
// the default geometry); a deadline further out waits in its slot and is
// passed over until its lap comes round.
const farSlots = 64

// New returns a stopped wheel with the given tick (0 = DefaultTick) and slot
// count (0 = DefaultSlots, rounded up to a power of two). onTick, if not nil,
// runs on the wheel goroutine after deadlines fired, on every tick the
// sweeper is awake; it returns whether it has work left for the next tick
// (the sweeper does not sleep while it has). Whoever gives onTick new work
// while the wheel may sleep calls Wake.
func New(tick time.Duration, slots int, onTick func() bool) *Wheel {
	if tick <= 0 {
		tick = DefaultTick
	}
	if slots <= 0 {
		slots = DefaultSlots
	}
	n := 1
	for n < slots {
		n <<= 1
	}
	w := &Wheel{tick: tick, epoch: time.Now(), slots: make([]Entry, n), far: make([]Entry, farSlots), onTick: onTick,
		stop: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1)}
	for 1<<w.shift < n {
		w.shift++
	}
	for _, heads := range [][]Entry{w.slots, w.far} {
		for i := range heads {
			heads[i].prev, heads[i].next = &heads[i], &heads[i]
		}
	}
	return w
}

// Tick returns the wheel's resolution.
func (w *Wheel) Tick() time.Duration { return w.tick }

// Now is the coarse clock: ticks since the wheel was made. While the sweeper
// is awake it advances once per tick and costs two atomic loads, cheap
// enough to read per frame; while it sleeps, Now reads the real clock, and
// wakes the sweeper when reads come faster than burstReads a tick
// (averaged over the sleep and awakeTicks more).
func (w *Wheel) Now() int64 {
	if !w.asleep.Load() {
		return w.now.Load()
	}
	t := int64(time.Since(w.epoch) / w.tick)
	w.advanceNow(t)
	if w.sleepReads.Add(1) > burstReads*(t-w.sleptAt.Load()+awakeTicks) {
		w.Wake()
	}
	return w.now.Load()
}

// Wake makes a sleeping sweeper tick again (for awakeTicks at least). It is
// cheap when the sweeper is awake.
func (w *Wheel) Wake() { w.wakeUp(true) }

// wakeUp wakes a sleeping sweeper; stay keeps it awake for awakeTicks
// after (Wake, and Now's bursts), where Schedule of an earlier deadline
// only has it sweep and choose its sleep again.
func (w *Wheel) wakeUp(stay bool) {
	if stay {
		// Recorded even when the sweeper looks awake: it may be between
		// running onTick (no work then) and falling asleep, and trySleep
		// checks this after it has set asleep, so that one of the two
		// sees the other.
		w.stay.Store(true)
	}
	if !w.asleep.Load() {
		return
	}
	// The clock first, then asleep: whoever sees the sweeper awake reads a
	// current Now, not the one from before it slept.
	w.advanceNow(int64(time.Since(w.epoch) / w.tick))
	if w.asleep.CompareAndSwap(true, false) {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// advanceNow moves the coarse clock forward to t (never back: the sweeper
// and Wake both set it).
func (w *Wheel) advanceNow(t int64) {
	for {
		old := w.now.Load()
		if old >= t || w.now.CompareAndSwap(old, t) {
			return
		}
	}
}

// Asleep reports whether the sweeper sleeps past the next tick.
func (w *Wheel) Asleep() bool { return w.asleep.Load() }

// Ticks converts d to a whole number of ticks, rounding up.
func (w *Wheel) Ticks(d time.Duration) int64 { return int64((d + w.tick - 1) / w.tick) }

// Start starts the sweeper goroutine.
func (w *Wheel) Start() {
	if w.started.Swap(true) {
		return
	}
	go w.run()
}

// Stop stops the sweeper and waits for it. Pending entries never fire.
func (w *Wheel) Stop() {
	if !w.started.Load() {
		return
	}
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// Schedule (re)arms e to fire after d. It replaces an earlier deadline. It
// reads the real clock, not Now, so that a late sweeper cannot make a
// deadline fire early.
func (w *Wheel) Schedule(e *Entry, d time.Duration) {
	w.ScheduleAt(e, int64(time.Since(w.epoch)/w.tick)+w.Ticks(d))
}

// ScheduleAt (re)arms e to fire at tick at.
//
// A deadline in the lap of the next tick to sweep goes into its slot of
// that lap; a later one into the far level, by lap, and moves down into
// its slot when the sweeper enters its lap (cascade). The slots then hold
// only deadlines the sweeper meets on this pass, so the first non-empty
// slot is when it next has work, however many far deadlines (idle
// timeouts, minutes out) the sessions keep pushing ahead of them.
func (w *Wheel) ScheduleAt(e *Entry, at int64) {
	w.mu.Lock()
	if e.linked {
		w.unlink(e)
	}
	if w.n == 0 {
		// Nothing to sweep between the last tick swept and now: an empty
		// wheel's sweep position catches up with the clock, so the entry
		// is placed against the present, not against when it fell asleep.
		w.cur = max(w.cur, int64(time.Since(w.epoch)/w.tick)-1)
	}
	if at <= w.cur {
		at = w.cur + 1
	}
	e.at = at
	w.link(e)
	early := w.asleep.Load() && at < w.wakeAt
	w.mu.Unlock()
	if early {
		w.wakeUp(false)
	}
}

// link puts e into the slot or far slot its deadline belongs to (see
// ScheduleAt). The caller holds mu.
func (w *Wheel) link(e *Entry) {
	var head *Entry
	if lap := e.at >> w.shift; lap == (w.cur+1)>>w.shift {
		head = &w.slots[e.at&int64(len(w.slots)-1)]
	} else {
		head = &w.far[lap&(farSlots-1)]
		e.far = true
		w.nFar++
	}
	e.prev, e.next = head.prev, head
	head.prev.next = e
	head.prev = e
	e.linked = true
	w.n++
}

// Cancel disarms e. It is a no-op when e is not scheduled.
func (w *Wheel) Cancel(e *Entry) {
	w.mu.Lock()
	if e.linked {
		w.unlink(e)
	}
	w.mu.Unlock()
}

// unlink takes e out of the wheel. The caller holds mu.
func (w *Wheel) unlink(e *Entry) {
	if e.far {
		w.nFar--
	}
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next, e.linked, e.far = nil, nil, false, false
	w.n--
}

// run is the sweeper. It ticks while anything is due soon, onTick has
// work, or something woke it in the last awakeTicks; otherwise it sleeps
// until the first slot that holds an entry comes round, or until woken
// (Schedule of an earlier deadline, Now, Wake). An idle gateway's wheel
// therefore costs no wakeups at all, and one with sessions ticks as before.
func (w *Wheel) run() {
	defer close(w.done)
	t := time.NewTimer(w.tick)
	defer t.Stop()
	var due []*Entry
	awakeUntil := int64(awakeTicks)
	for {
		select {
		case <-w.stop:
			return
		case <-w.wake:
			// Woken early: sweep what is due now.
			t.Stop()
		case <-t.C:
		}
		// A Wake (not a new deadline) keeps it awake a while.
		if w.stay.Swap(false) {
			awakeUntil = int64(time.Since(w.epoch)/w.tick) + awakeTicks
		}
		target := int64(time.Since(w.epoch) / w.tick)
		w.advanceNow(target) // before endSleep: see Wake
		w.endSleep()
		due = w.advance(target, due[:0])
		for i, e := range due {
			due[i] = nil
			e.Owner.Expire(e)
		}
		busy := w.onTick != nil && w.onTick()
		sleep := int64(1)
		if !busy && target >= awakeUntil {
			sleep = w.trySleep(target)
		}
		if sleep > 0 {
			// Wake at the start of the tick the sleep ends in (the ticker
			// this replaces fired on tick boundaries too).
			t.Reset(time.Until(w.epoch.Add(time.Duration(target+sleep) * w.tick)))
		}
	}
}

// endSleep clears the sleep state after the sweeper's timer fired or it
// was woken.
func (w *Wheel) endSleep() {
	w.mu.Lock()
	w.wakeAt = 0
	w.asleep.Store(false)
	w.mu.Unlock()
}

// trySleep decides how many ticks the sweeper may sleep after tick now: 1
// when an entry sits in one of the next two slots (it is ticking anyway),
// else until the first slot holding an entry comes round (entries a lap or
// more out sit in earlier slots and are found there), or 0 (until woken)
// when the wheel is empty: Schedule wakes it for anything earlier than
// wakeAt. When it sleeps it sets asleep, under mu so that a concurrent
// Schedule sees wakeAt.
func (w *Wheel) trySleep(now int64) int64 {
	w.mu.Lock() // advance just swept up to now: w.cur == now
	defer w.mu.Unlock()
	n := int64(len(w.slots))
	// The slots hold this lap's deadlines only, all after w.cur.
	d := int64(0)
	for i := int64(1); i <= n && (w.cur+i)>>w.shift == (w.cur+1)>>w.shift; i++ {
		head := &w.slots[(w.cur+i)&(n-1)]
		if head.next != head {
			d = i
			break
		}
	}
	if d == 0 && w.nFar > 0 {
		// Sleep through to the start of the next lap whose far slot holds
		// anything; its cascade runs on the way there.
		for lap := (w.cur+1)>>w.shift + 1; ; lap++ {
			if head := &w.far[lap&(farSlots-1)]; head.next != head {
				d = lap<<w.shift - w.cur
				break
			}
		}
	}
	switch {
	case d > 0 && d <= 2:
		return 1
	case d == 0:
		w.wakeAt = math.MaxInt64
	default:
		w.wakeAt = now + d
	}
	w.sleptAt.Store(now)
	w.sleepReads.Store(0)
	w.asleep.Store(true)
	if w.stay.Load() && w.asleep.CompareAndSwap(true, false) {
		// A Wake came since the sweep (onTick has work again): no sleep.
		w.wakeAt = 0
		return 1
	}
	return d
}

// advance sweeps every slot up to tick target and unlinks the due entries.
//
// After the last tick of a lap it cascades the next lap's far deadlines
// into their slots, so that between two calls the slots hold exactly the
// deadlines of the lap of w.cur+1 (what ScheduleAt's placement assumes).
func (w *Wheel) advance(target int64, due []*Entry) []*Entry {
	w.mu.Lock()
	defer w.mu.Unlock()
	mask := int64(len(w.slots) - 1)
	if w.n == 0 {
		w.cur = max(w.cur, target) // nothing to sweep or cascade on the way
	}
	for w.cur < target {
		w.cur++
		head := &w.slots[w.cur&mask]
		for e, last := head.next, head.prev; e != head; {
			next := e.next
			w.unlink(e)
			if e.at <= w.cur { // always, while the slots hold only this lap
				due = append(due, e)
			} else {
				w.link(e) // at the tail at worst: not met again
			}
			if e == last {
				break
			}
			e = next
		}
		if (w.cur+1)&mask == 0 && w.nFar > 0 {
			w.cascade((w.cur + 1) >> w.shift)
		}
	}
	return due
}

// cascade moves lap's deadlines from the far level into their slots.
// Deadlines farSlots or more laps out share the far slot and stay. The
// caller holds mu, with w.cur+1 the first tick of lap.
func (w *Wheel) cascade(lap int64) {
	head := &w.far[lap&(farSlots-1)]
	for e := head.next; e != head; {
		next := e.next
		if e.at>>w.shift == lap {
			w.unlink(e)
			w.link(e)
		}
		e = next
	}
}
