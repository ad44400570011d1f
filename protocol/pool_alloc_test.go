//go:build !race

package protocol

import "testing"

// The race detector's sync.Pool drops items at random, so the tests of
// what a pool saves run without it (make test-alloc).

func TestAppendWelcomeZeroAlloc(t *testing.T) {
	w := Welcome{Session: "0123456789abcdef0123456789abcdef", Resume: make([]byte, 41), HB: 30, MaxFrame: 65536, Node: "gw-1", Last: 9}
	dst := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(1000, func() { dst = AppendWelcome(dst[:0], &w) }); n != 0 {
		t.Fatalf("%v allocations per WELCOME, want 0", n)
	}
}
