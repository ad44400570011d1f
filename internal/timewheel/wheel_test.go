package timewheel

import (
	"sync"
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
