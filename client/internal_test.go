package client

import (
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
