package timewheel

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type rec struct {
	mu    sync.Mutex
	fired map[*Entry]time.Time
}

func (r *rec) Expire(e *Entry) {
	r.mu.Lock()
	r.fired[e] = time.Now()
	r.mu.Unlock()
}

func (r *rec) get(e *Entry) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.fired[e]
	return t, ok
}

func TestScheduleFiresCancelDoesNot(t *testing.T) {
	w := New(5*time.Millisecond, 64, nil) // small wheel: 320 ms lap, so 500 ms wraps
	w.Start()
	defer w.Stop()
	r := &rec{fired: map[*Entry]time.Time{}}
	start := time.Now()
	a, b, c, d := &Entry{Owner: r}, &Entry{Owner: r}, &Entry{Owner: r}, &Entry{Owner: r}
	w.Schedule(a, 30*time.Millisecond)
	w.Schedule(b, 500*time.Millisecond) // longer than one lap
	w.Schedule(c, 20*time.Millisecond)
	w.Cancel(c)
	w.Schedule(d, time.Hour)
	w.Schedule(d, 60*time.Millisecond) // re-arm replaces
	deadline := time.Now().Add(poll.Patience)
	for time.Now().Before(deadline) {
		_, okA := r.get(a)
		_, okB := r.get(b)
		_, okD := r.get(d)
		if okA && okB && okD {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The wheel counts whole ticks from the tick Schedule ran in, so a
	// deadline may fire up to one tick early; how late depends on the box
	// (no upper bound here: timing claims belong in benchmarks), but the
	// order of the deadlines always holds.
	const tick = 5 * time.Millisecond
	var prev time.Time
	for _, tc := range []struct {
		name string
		e    *Entry
		min  time.Duration
	}{{"a", a, 30 * time.Millisecond}, {"d", d, 60 * time.Millisecond}, {"b", b, 500 * time.Millisecond}} {
		at, ok := r.get(tc.e)
		if !ok {
			t.Fatalf("%s never fired", tc.name)
		}
		if el := at.Sub(start); el < tc.min-tick {
			t.Errorf("%s fired after %v, want at least %v", tc.name, el, tc.min-tick)
		}
		if at.Before(prev) {
			t.Errorf("%s fired before the entry due earlier", tc.name)
		}
		prev = at
	}
	if _, ok := r.get(c); ok {
		t.Fatal("cancelled entry fired")
	}
	if a.Scheduled() || d.Scheduled() {
		t.Fatal("fired entries still linked")
	}
}

// reschedule re-arms itself from inside Expire, as the idle check does.
type reschedule struct {
	w     *Wheel
	count int
	mu    sync.Mutex
}

func (r *reschedule) Expire(e *Entry) {
	r.mu.Lock()
	r.count++
	n := r.count
	r.mu.Unlock()
	if n < 3 {
		r.w.Schedule(e, time.Millisecond)
	}
}

func TestExpireMayReschedule(t *testing.T) {
	w := New(2*time.Millisecond, 0, nil)
	w.Start()
	defer w.Stop()
	r := &reschedule{w: w}
	e := &Entry{Owner: r}
	w.Schedule(e, time.Millisecond)
	deadline := time.Now().Add(poll.Patience)
	for {
		r.mu.Lock()
		n := r.count
		r.mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fired %d times, want 3", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func BenchmarkScheduleCancel(b *testing.B) {
	w := New(0, 0, nil)
	e := &Entry{}
	b.ReportAllocs()
	for b.Loop() {
		w.Schedule(e, time.Second)
		w.Cancel(e)
	}
}

// counter counts onTick calls and hands out work: while work is set, onTick
// reports more work and the wheel must keep ticking.
type counter struct {
	ticks atomic.Int64
	work  atomic.Int64 // ticks of work left
}

func (c *counter) onTick() bool {
	c.ticks.Add(1)
	return c.work.Add(-1) > 0
}

// untilAsleep waits for w's sweeper to go to sleep.
func untilAsleep(t *testing.T, w *Wheel) {
	t.Helper()
	poll.Until(t, poll.Patience, func() error {
		if !w.Asleep() {
			return errors.New("the idle wheel never went to sleep")
		}
		return nil
	})
}

// An idle wheel sleeps: no sweeps, no onTick, and yet its clock and its
// deadlines stay right.
func TestIdleWheelSleeps(t *testing.T) {
	const tick = time.Millisecond
	c := &counter{}
	w := New(tick, 64, c.onTick)
	w.Start()
	defer w.Stop()
	untilAsleep(t, w)
	asleep := c.ticks.Load()
	time.Sleep(50 * tick) // what an awake wheel would tick through
	if n := c.ticks.Load() - asleep; n != 0 {
		t.Fatalf("the sleeping wheel ticked %d times", n)
	}

	// Now reads the real clock while asleep: it is never behind the ticks
	// since the epoch. A read now and then (a quiet gateway's heartbeats)
	// leaves the sweeper asleep; a burst of reads (traffic, a read per
	// frame) wakes it, so that the next reads are the cheap ones.
	before := int64(time.Since(w.epoch) / tick)
	if now := w.Now(); now < before {
		t.Fatalf("Now = %d while asleep, the clock says at least %d", now, before)
	}
	asleep = c.ticks.Load()
	time.Sleep(20 * tick)
	if n := c.ticks.Load() - asleep; n != 0 || !w.Asleep() {
		t.Fatalf("one Now woke the empty wheel (%d sweeps since)", n)
	}
	// A short burst (a few dozen devices' heartbeats that arrive
	// together) is not traffic: the sweeper sleeps on. The burst is more
	// than burstReads a tick of the sleep so far, less than that over the
	// sleep and awakeTicks more.
	slept := int64(time.Since(w.epoch)/tick) - w.sleptAt.Load()
	burst := burstReads * (slept + awakeTicks/2)
	for range burst {
		w.Now()
	}
	time.Sleep(20 * tick)
	if n := c.ticks.Load() - asleep; n != 0 || !w.Asleep() {
		t.Fatalf("a burst of %d Now calls %d ticks into the sleep woke the empty wheel (%d sweeps since)", burst, slept, n)
	}
	for range 1_000_000 {
		w.Now()
	}
	poll.Until(t, poll.Patience, func() error {
		if c.ticks.Load() == asleep {
			return errors.New("a burst of a million Now calls did not wake the empty wheel")
		}
		return nil
	})
	untilAsleep(t, w)

	// A deadline scheduled into the sleep fires.
	r := &rec{fired: map[*Entry]time.Time{}}
	e := &Entry{Owner: r}
	w.Schedule(e, 5*tick)
	poll.Until(t, poll.Patience, func() error {
		if _, ok := r.get(e); !ok {
			return errors.New("the entry scheduled while the wheel slept never fired")
		}
		return nil
	})

	// Wake gives onTick its ticks back; it keeps the wheel awake while it
	// reports work.
	untilAsleep(t, w)
	c.work.Store(20)
	from := c.ticks.Load()
	w.Wake()
	poll.Until(t, poll.Patience, func() error {
		if n := c.ticks.Load() - from; n < 20 {
			return fmt.Errorf("onTick ran %d times after Wake, want its 20 ticks of work", n)
		}
		return nil
	})
}

// A far deadline lets the wheel sleep until the deadline's slot, not past
// it: it fires, and the wheel does not tick on the way.
func TestWheelSleepsUntilTheNextDeadline(t *testing.T) {
	const tick = time.Millisecond
	c := &counter{}
	w := New(tick, 1024, c.onTick)
	w.Start()
	defer w.Stop()
	untilAsleep(t, w)
	r := &rec{fired: map[*Entry]time.Time{}}
	e := &Entry{Owner: r}
	from := c.ticks.Load()
	w.Schedule(e, 300*tick) // wakes the wheel: earlier than its planned lap
	poll.Until(t, poll.Patience, func() error {
		if _, ok := r.get(e); !ok {
			return errors.New("the far entry never fired")
		}
		return nil
	})
	// The Schedule woke it to choose its sleep again (not to stay awake:
	// that is for Wake and bursts of Now), then it slept until the
	// entry's slot: a few sweeps for the 300 ticks it waited.
	if n := c.ticks.Load() - from; n > 20 {
		t.Fatalf("the wheel ticked %d times waiting 300 ticks for one deadline", n)
	}
}

// Deadlines laps away (the idle timeouts sessions keep pushing ahead) wait
// in the far level, not in the slots: a wheel holding one in every slot
// goes to sleep until it has one due, where it used to find an occupied
// slot one tick ahead and tick on, and each fires on time, including one
// past the far level's span.
func TestFarDeadlinesLetTheWheelSleep(t *testing.T) {
	const (
		tick  = time.Millisecond
		slots = 16 // a 16 ms lap; the far level spans 64 laps, 1,024 ms
	)
	w := New(tick, slots, nil)
	w.Start()
	defer w.Stop()
	untilAsleep(t, w)
	r := &rec{fired: map[*Entry]time.Time{}}
	type want struct {
		e *Entry
		d time.Duration
	}
	var ws []want
	for i := range slots {
		ws = append(ws, want{&Entry{Owner: r}, time.Duration(50*slots+i) * tick}) // 50 laps out, one per slot
	}
	ws = append(ws, want{&Entry{Owner: r}, 70 * slots * tick}) // past the far level: shares a far slot
	start := time.Now()
	for _, x := range ws {
		w.Schedule(x.e, x.d)
	}
	// Asleep after awakeTicks, long before the first deadline (unless the
	// box stalls for most of a second: then this fails, and says so).
	poll.Until(t, poll.Patience, func() error {
		if _, ok := r.get(ws[0].e); ok {
			t.Fatal("the wheel was still ticking when the first far deadline fired")
		}
		if !w.Asleep() {
			return errors.New("the wheel holding only far deadlines never went to sleep")
		}
		return nil
	})
	poll.Until(t, poll.Patience, func() error {
		for i, x := range ws {
			if _, ok := r.get(x.e); !ok {
				return fmt.Errorf("entry %d (due after %v) has not fired", i, x.d)
			}
		}
		return nil
	})
	for i, x := range ws {
		at, _ := r.get(x.e)
		if el := at.Sub(start); el < x.d-tick {
			t.Errorf("entry %d fired after %v, want at least %v", i, el, x.d-tick)
		}
	}
}
