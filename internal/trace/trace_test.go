package trace

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m, nil) }

// fakeClock is a Table clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// TestExpiryOnUse: a trace answers Lookup until it expires; the first
// Lookup after that removes it, and Any turns false: tracing stops by
// itself with no timer.
func TestExpiryOnUse(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tb := &Table{now: clk.now}
	if tb.Any() {
		t.Fatal("an empty table says a trace is active")
	}
	if err := tb.Start("dev", "id1", clk.t.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !tb.Any() {
		t.Fatal("Any false with a trace")
	}
	if id, ok := tb.Lookup("dev"); !ok || id != "id1" {
		t.Fatalf("Lookup = %q %v", id, ok)
	}
	if _, ok := tb.Lookup("other"); ok {
		t.Fatal("an untraced device is traced")
	}
	clk.t = clk.t.Add(5 * time.Second)
	if _, ok := tb.Lookup("dev"); ok {
		t.Fatal("traced at its expiry")
	}
	if tb.Any() || len(tb.List()) != 0 {
		t.Fatalf("expired trace left: Any %v, %v", tb.Any(), tb.List())
	}
	// An expired trace of another device is purged by any Lookup.
	_ = tb.Start("a", "x", clk.t.Add(time.Second))
	_ = tb.Start("b", "y", clk.t.Add(time.Hour))
	clk.t = clk.t.Add(2 * time.Second)
	if _, ok := tb.Lookup("b"); !ok {
		t.Fatal("b not traced")
	}
	if _, ok := tb.Lookup("zzz"); ok || len(tb.List()) != 1 {
		t.Fatalf("after a's expiry: %v", tb.List())
	}
}

// TestTableBounded: at most MaxTraces devices; expired ones make room;
// renewing a traced device needs none.
func TestTableBounded(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tb := &Table{now: clk.now}
	for i := range MaxTraces {
		if err := tb.Start(fmt.Sprint("d", i), "id", clk.t.Add(time.Duration(i+1)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.Start("one-more", "id", clk.t.Add(time.Hour)); !errors.Is(err, ErrFull) {
		t.Fatalf("over the bound: %v", err)
	}
	if err := tb.Start("d3", "id2", clk.t.Add(time.Hour)); err != nil {
		t.Fatalf("renewing a traced device: %v", err)
	}
	clk.t = clk.t.Add(1500 * time.Millisecond) // d0 expired
	if err := tb.Start("one-more", "id", clk.t.Add(time.Hour)); err != nil {
		t.Fatalf("after an expiry: %v", err)
	}
	if n := len(tb.List()); n != MaxTraces {
		t.Fatalf("%d traces, want %d", n, MaxTraces)
	}
	for _, bad := range [][2]string{{"", "id"}, {"d", ""}, {strings.Repeat("d", MaxDevice+1), "id"}, {"d", strings.Repeat("i", MaxID+1)}} {
		if err := tb.Start(bad[0], bad[1], clk.t.Add(time.Hour)); err == nil {
			t.Fatalf("Start(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

// TestMessage: the cluster message round-trips and bad ones are refused
// with an error, never a panic.
func TestMessage(t *testing.T) {
	b, err := Encode("dev", "abc", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Decode(b)
	if err != nil || r.Device != "dev" || r.ID != "abc" || r.ForMs != 5000 {
		t.Fatalf("Decode = %+v, %v", r, err)
	}
	var tb Table
	now := time.Now()
	if err := tb.Apply(r, now); err != nil {
		t.Fatal(err)
	}
	if l := tb.List(); len(l) != 1 || !l[0].Until.Equal(now.Add(5*time.Second)) {
		t.Fatalf("applied: %+v", l)
	}
	long, _ := Encode("dev", "abc", 2*MaxDuration)
	zero, _ := Encode("dev", "abc", 0)
	for _, bad := range [][]byte{nil, {0xc1}, {0x81, 0xa1, 'k', 0xa5, 'd', 'r', 'a', 'i', 'n'}, long, zero, b[:len(b)-1]} {
		if _, err := Decode(bad); err == nil {
			t.Fatalf("Decode(%x) accepted", bad)
		}
	}
}

// BenchmarkLookupOff is the frame path's cost of tracing when it is off.
func BenchmarkLookupOff(b *testing.B) {
	var tb Table
	for b.Loop() {
		if tb.Any() {
			tb.Lookup("dev")
		}
	}
}
