package timewheel

import (
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
	Owner      Expirer
}

// Scheduled reports whether e is waiting in the wheel.
func (e *Entry) Scheduled() bool { return e.linked }

// Wheel is a hashed timing wheel; see the package comment.
type Wheel struct {
	tick  time.Duration
	epoch time.Time

	mu    sync.Mutex
	slots []Entry // sentinel heads of circular lists
	cur   int64   // last tick swept
	now   atomic.Int64

	onTick  func()
	stop    chan struct{}
	done    chan struct{}
	started atomic.Bool
}

// New returns a stopped wheel with the given tick (0 = DefaultTick) and slot
// count (0 = DefaultSlots, rounded up to a power of two). onTick, if not nil,
// runs on the wheel goroutine once per tick after deadlines fired.
func New(tick time.Duration, slots int, onTick func()) *Wheel {
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
	w := &Wheel{tick: tick, epoch: time.Now(), slots: make([]Entry, n), onTick: onTick,
		stop: make(chan struct{}), done: make(chan struct{})}
	for i := range w.slots {
		w.slots[i].prev, w.slots[i].next = &w.slots[i], &w.slots[i]
	}
	return w
}

// Tick returns the wheel's resolution.
func (w *Wheel) Tick() time.Duration { return w.tick }

// Now is the coarse clock: ticks since the wheel was made. It advances once
// per tick and is cheap enough to read per frame.
func (w *Wheel) Now() int64 { return w.now.Load() }

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
func (w *Wheel) ScheduleAt(e *Entry, at int64) {
	w.mu.Lock()
	if e.linked {
		unlink(e)
	}
	if at <= w.cur {
		at = w.cur + 1
	}
	e.at = at
	head := &w.slots[at&int64(len(w.slots)-1)]
	e.prev, e.next = head.prev, head
	head.prev.next = e
	head.prev = e
	e.linked = true
	w.mu.Unlock()
}

// Cancel disarms e. It is a no-op when e is not scheduled.
func (w *Wheel) Cancel(e *Entry) {
	w.mu.Lock()
	if e.linked {
		unlink(e)
	}
	w.mu.Unlock()
}

func unlink(e *Entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next, e.linked = nil, nil, false
}

func (w *Wheel) run() {
	defer close(w.done)
	t := time.NewTicker(w.tick)
	defer t.Stop()
	var due []*Entry
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			target := int64(now.Sub(w.epoch) / w.tick)
			w.now.Store(target)
			due = w.advance(target, due[:0])
			for i, e := range due {
				due[i] = nil
				e.Owner.Expire(e)
			}
			if w.onTick != nil {
				w.onTick()
			}
		}
	}
}

// advance sweeps every slot up to tick target and unlinks the due entries.
func (w *Wheel) advance(target int64, due []*Entry) []*Entry {
	w.mu.Lock()
	defer w.mu.Unlock()
	if target-w.cur > int64(len(w.slots)) {
		w.cur = target - int64(len(w.slots))
	}
	for w.cur < target {
		w.cur++
		head := &w.slots[w.cur&int64(len(w.slots)-1)]
		for e := head.next; e != head; {
			next := e.next
			if e.at <= w.cur {
				unlink(e)
				due = append(due, e)
			}
			e = next
		}
	}
	return due
}
