package router

import (
	"sync"
	"testing"
	"time"
)

// TestCircuitStateMachine drives one circuit through op sequences with a
// fake clock and checks the state and Allow result after each step.
func TestCircuitStateMachine(t *testing.T) {
	const cool = time.Second
	type step struct {
		op    string // allow, deny (Allow must be false), trip, linkdown, ok (Success), wait <d>
		wait  time.Duration
		state State
	}
	allow := func(s State) step { return step{op: "allow", state: s} }
	deny := func(s State) step { return step{op: "deny", state: s} }
	do := func(op string, s State) step { return step{op: op, state: s} }
	wait := func(d time.Duration, s State) step { return step{op: "wait", wait: d, state: s} }
	tests := []struct {
		name  string
		steps []step
		stats Stats
	}{
		{"closed allows", []step{allow(Closed), do("ok", Closed), allow(Closed)}, Stats{}},
		{"trip opens and denies", []step{do("trip", Open), deny(Open), wait(cool-1, Open), deny(Open)},
			Stats{Opened: 1, QueueFull: 1}},
		{"cool-down lets one probe through", []step{
			do("trip", Open), wait(cool, Open), allow(HalfOpen), deny(HalfOpen), deny(HalfOpen),
		}, Stats{Opened: 1, HalfOpened: 1, Probes: 1, QueueFull: 1}},
		{"probe success closes", []step{
			do("linkdown", Open), wait(cool, Open), allow(HalfOpen), do("ok", Closed), allow(Closed), allow(Closed),
		}, Stats{Opened: 1, HalfOpened: 1, Reclosed: 1, Probes: 1, LinkDown: 1}},
		{"probe failure reopens for a full cool-down", []step{
			do("trip", Open), wait(cool, Open), allow(HalfOpen), do("trip", Open),
			wait(cool/2, Open), deny(Open), wait(cool/2, Open), allow(HalfOpen), do("ok", Closed),
		}, Stats{Opened: 1, HalfOpened: 2, Reopened: 1, Reclosed: 1, Probes: 2, QueueFull: 2}},
		{"trip while open does not extend", []step{
			do("trip", Open), wait(cool/2, Open), do("trip", Open), wait(cool/2, Open), allow(HalfOpen),
		}, Stats{Opened: 1, HalfOpened: 1, Probes: 1, QueueFull: 1}},
		{"success while open is ignored", []step{
			do("trip", Open), do("ok", Open), deny(Open),
		}, Stats{Opened: 1, QueueFull: 1}},
		{"lost probe is retried after a cool-down", []step{
			do("trip", Open), wait(cool, Open), allow(HalfOpen), wait(cool-1, HalfOpen), deny(HalfOpen),
			wait(1, HalfOpen), allow(HalfOpen), do("ok", Closed),
		}, Stats{Opened: 1, HalfOpened: 1, Reclosed: 1, Probes: 2, QueueFull: 1}},
		{"two outages", []step{
			do("trip", Open), wait(cool, Open), allow(HalfOpen), do("ok", Closed),
			do("linkdown", Open), wait(2*cool, Open), allow(HalfOpen), do("ok", Closed),
		}, Stats{Opened: 2, HalfOpened: 2, Reclosed: 2, Probes: 2, QueueFull: 1, LinkDown: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			cs, err := NewCircuits(CircuitConfig{CoolDown: cool, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			c := cs.Get("a")
			for i, s := range tt.steps {
				switch s.op {
				case "allow", "deny":
					if got := c.Allow(); got != (s.op == "allow") {
						t.Fatalf("step %d: Allow() = %v", i, got)
					}
				case "trip":
					c.Trip(QueueFull)
				case "linkdown":
					c.Trip(LinkDown)
				case "ok":
					c.Success()
				case "wait":
					clk.Advance(s.wait)
				}
				if got := c.State(); got != s.state {
					t.Fatalf("step %d (%s): state %v, want %v", i, s.op, got, s.state)
				}
			}
			if got := c.Stats(); got != tt.stats {
				t.Fatalf("stats %+v, want %+v", got, tt.stats)
			}
		})
	}
}

func TestCircuitsSet(t *testing.T) {
	clk := newFakeClock()
	cs, _ := NewCircuits(CircuitConfig{Now: clk.Now})
	if !cs.Allow("unknown") {
		t.Fatal("a shard without a circuit must be allowed")
	}
	if _, ok := cs.Lookup("unknown"); ok {
		t.Fatal("Allow created a circuit")
	}
	a := cs.Get("a")
	if cs.Get("a") != a {
		t.Fatal("Get returned a new circuit for the same shard")
	}
	a.Trip(LinkDown)
	if cs.Allow("a") {
		t.Fatal("open circuit allowed")
	}
	clk.Advance(DefaultCoolDown)
	if !cs.Allow("a") || a.State() != HalfOpen {
		t.Fatal("default cool-down not applied")
	}

	a.Trip(LinkDown) // the probe failed
	a.Reset()        // a new link authenticated
	if a.State() != Closed || !cs.Allow("a") || a.Stats().Reclosed != 1 {
		t.Fatalf("Reset: %v %+v", a.State(), a.Stats())
	}
	a.Reset() // closed already: nothing
	if a.Stats().Reclosed != 1 {
		t.Fatal("Reset of a closed circuit counted")
	}

	cs.Retain(mustRing(t, Config{}, []Shard{{Name: "b"}, {Name: "c"}}))
	if _, ok := cs.Lookup("a"); ok {
		t.Fatal("circuit of a removed shard kept")
	}
	snap := cs.Snapshot()
	if len(snap) != 2 || snap[0].Shard != "b" || snap[1].Shard != "c" || snap[0].State != Closed {
		t.Fatalf("Snapshot() = %+v", snap)
	}
	cs.Get("b").Trip(QueueFull)
	if got := cs.Totals(); got.Opened != 2 || got.HalfOpened != 1 || got.LinkDown != 2 || got.QueueFull != 1 || got.Reopened != 1 {
		t.Fatalf("Totals() = %+v: counters of the removed shard lost?", got)
	}
	cs.Retain(nil)
	if len(cs.Snapshot()) != 0 || cs.Totals().Opened != 2 {
		t.Fatal("Retain(nil) must drop every circuit and keep the totals")
	}
}

func TestCircuitAllowZeroAlloc(t *testing.T) {
	clk := newFakeClock()
	cs, _ := NewCircuits(CircuitConfig{Now: clk.Now})
	cs.Get("a")
	cs.Get("b").Trip(QueueFull)
	for _, name := range []string{"a", "b", "none"} {
		if n := testing.AllocsPerRun(1000, func() { cs.Allow(name) }); n != 0 {
			t.Fatalf("Allow(%s) allocates %v times", name, n)
		}
	}
}

// TestCircuitConcurrent: under -race, concurrent Allow/Trip/Success keep
// the counters consistent with the transitions.
func TestCircuitConcurrent(t *testing.T) {
	cs, _ := NewCircuits(CircuitConfig{CoolDown: time.Microsecond})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20000 {
				c := cs.Get([]string{"a", "b"}[i%2])
				switch {
				case c.Allow() && (i+g)%3 == 0:
					c.Success()
				case i%7 == 0:
					c.Trip(QueueFull)
				}
			}
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 100 {
			cs.Retain(mustRing(t, Config{}, []Shard{{Name: "a"}, {Name: "b"}}))
			_ = cs.Totals()
		}
	}()
	wg.Wait()
	for _, st := range cs.Snapshot() {
		s := st.Stats
		// Every entry to Open is left at most once, by a probe.
		if s.HalfOpened > s.Opened+s.Reopened || s.Reclosed+s.Reopened > s.Probes {
			t.Fatalf("%s: inconsistent counters %+v", st.Shard, s)
		}
		if s.Opened != s.Reclosed+boolU64(st.State != Closed) {
			t.Fatalf("%s: opened %d, reclosed %d, state %v", st.Shard, s.Opened, s.Reclosed, st.State)
		}
	}
}

func boolU64(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func TestStateStrings(t *testing.T) {
	for want, s := range map[string]State{"closed": Closed, "open": Open, "half-open": HalfOpen, "unknown": State(9)} {
		if s.String() != want {
			t.Errorf("%d: %q", s, s.String())
		}
	}
	for want, r := range map[string]Reason{"queue_full": QueueFull, "link_down": LinkDown, "none": Reason(0)} {
		if r.String() != want {
			t.Errorf("%d: %q", r, r.String())
		}
	}
}

func BenchmarkCircuitsAllow(b *testing.B) {
	cs, _ := NewCircuits(CircuitConfig{})
	for _, s := range testShards("shard-", 50) {
		cs.Get(s.Name)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cs.Allow("shard-17")
		}
	})
}
