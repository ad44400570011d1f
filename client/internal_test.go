package client

import (
	"slices"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := backoff{min: 10 * time.Millisecond, max: 100 * time.Millisecond}
	ceilings := []time.Duration{10, 20, 40, 80, 100, 100, 100}
	for i, ceil := range ceilings {
		ceil *= time.Millisecond
		if d := b.next(); d < 0 || d > ceil {
			t.Errorf("attempt %d: delay %v outside [0, %v]", i, d, ceil)
		}
	}
	for range 100 { // far beyond the shift width: still bounded
		if d := b.next(); d > b.max {
			t.Fatalf("delay %v above max", d)
		}
	}
}

// TestReconnectTargets: the gateway the client was on (or a GOAWAY's
// redirects) first, then Addr, then the fallbacks, each once.
func TestReconnectTargets(t *testing.T) {
	for _, tt := range []struct {
		first     []string
		addr      string
		fallbacks []string
		want      []string
	}{
		{[]string{"a"}, "a", nil, []string{"a"}},
		{[]string{"b"}, "a", nil, []string{"b", "a"}},
		{[]string{"a"}, "a", []string{"a", "b", "c"}, []string{"a", "b", "c"}},
		{[]string{"c", "b"}, "a", []string{"b", "d"}, []string{"c", "b", "a", "d"}},
		{nil, "a", []string{"b"}, []string{"a", "b"}},
	} {
		if got := reconnectTargets(tt.first, tt.addr, tt.fallbacks); !slices.Equal(got, tt.want) {
			t.Errorf("reconnectTargets(%v, %q, %v) = %v, want %v", tt.first, tt.addr, tt.fallbacks, got, tt.want)
		}
	}
}

func TestOutbox(t *testing.T) {
	var o outbox
	for _, p := range []string{"a", "b", "c", "d"} {
		o.push([]byte(p), true)
	}
	if n := o.ackThrough(2); n != 2 || len(o.frames) != 2 || o.frames[0].seq != 3 {
		t.Fatalf("ackThrough(2) = %d, frames %+v", n, o.frames)
	}
	if n := o.ackThrough(2); n != 0 {
		t.Fatalf("repeated ACK dropped %d frames", n)
	}
	o.renumber()
	if o.frames[0].seq != 1 || o.frames[1].seq != 2 || o.next != 3 {
		t.Fatalf("renumber: frames %+v next %d", o.frames, o.next)
	}
	if f := o.push([]byte("e"), false); f.seq != 3 {
		t.Fatalf("push after renumber: seq %d", f.seq)
	}
	if n := o.ackThrough(10); n != 3 || o.next != 11 {
		t.Fatalf("ackThrough(10) = %d, next %d", n, o.next)
	}
}
