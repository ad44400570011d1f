//go:build !race

package keyedmac

import "testing"

// The race detector's sync.Pool drops items at random, so this runs
// without it (make test-alloc).
func TestZeroAlloc(t *testing.T) {
	k := New([]byte("key"))
	body := make([]byte, 25)
	dst := make([]byte, 0, 64)
	n := testing.AllocsPerRun(1000, func() {
		m := k.Get()
		m.WriteString("switchyard-resume")
		m.Write(body)
		m.WriteString("device-1")
		dst = m.Sum(dst[:0])
	})
	if n != 0 {
		t.Fatalf("%v allocations per MAC, want 0", n)
	}
}
