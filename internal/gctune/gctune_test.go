package gctune

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/switchyard-gw/switchyard/internal/poll"
)

func TestPercent(t *testing.T) {
	p := Policy{Floor: 8 << 20, Min: 20, Max: 100}
	for _, tt := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{1 << 20, 100},  // small heap: the floor is many times the heap
		{8 << 20, 100},  // floor = live
		{16 << 20, 50},  // floor = half the live heap
		{40 << 20, 20},  // floor = a fifth
		{400 << 20, 20}, // large heap: Min
		{4 << 30, 20},   // a million sessions
		{10 << 20, 80},  // in between
		{32 << 20, 25},  //
		{1<<63 - 1, 20}, // no overflow
	} {
		if got := p.Percent(tt.live); got != tt.want {
			t.Errorf("Percent(%d) = %d, want %d", tt.live, got, tt.want)
		}
	}
}

// TestTunerFollowsTheHeap: with a live heap well past the floor the tuner
// sets Min after a collection; once the heap is freed it goes back to Max.
func TestTunerFollowsTheHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tu := Start(Policy{Floor: 1 << 20, Min: 20, Max: 100})
	defer tu.Stop()
	if tu.Last() != 100 {
		t.Fatalf("GOGC %d at start, want Max 100", tu.Last())
	}
	big := make([][]byte, 64)
	for i := range big {
		big[i] = make([]byte, 1<<20) // 64 MB live: floor/live is under Min
	}
	poll.Until(t, poll.Patience, func() error {
		runtime.GC()
		if tu.Last() != 20 {
			return fmt.Errorf("GOGC %d with a 64 MB live heap, want Min 20", tu.Last())
		}
		return nil
	})
	runtime.KeepAlive(big)
	big = nil
	poll.Until(t, poll.Patience, func() error {
		runtime.GC()
		if tu.Last() != 100 {
			return fmt.Errorf("GOGC %d once the heap was freed, want Max 100", tu.Last())
		}
		return nil
	})
}
