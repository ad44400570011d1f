package client

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
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

func TestFrameReader(t *testing.T) {
	var stream []byte
	stream = protocol.AppendFrame(stream, protocol.TypeData, 0, 0, []byte("first"))
	stream = protocol.AppendFrame(stream, protocol.Type(0x55), 0, 0, []byte("from the future")) // skipped
	big := bytes.Repeat([]byte("x"), 10000)
	stream = protocol.AppendFrame(stream, protocol.TypeData, protocol.FlagAckRequested, 7, big)
	stream = protocol.AppendFrame(stream, protocol.TypePing, 0, 0, nil)
	tests := []struct {
		name string
		r    io.Reader
	}{
		{"whole", bytes.NewReader(stream)},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(stream))},
		{"half", iotest.HalfReader(bytes.NewReader(stream))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fr := frameReader{r: tt.r, max: 1 << 20}
			want := []protocol.Frame{
				{Type: protocol.TypeData, Payload: []byte("first")},
				{Type: protocol.TypeData, Flags: protocol.FlagAckRequested, Seq: 7, Payload: big},
				{Type: protocol.TypePing, Payload: []byte{}},
			}
			for _, w := range want {
				f, err := fr.next()
				if err != nil || f.Type != w.Type || f.Flags != w.Flags || f.Seq != w.Seq || !bytes.Equal(f.Payload, w.Payload) {
					t.Fatalf("next() = %v %d %d %d bytes, %v; want %v", f.Type, f.Flags, f.Seq, len(f.Payload), err, w.Type)
				}
			}
			if _, err := fr.next(); err != io.EOF {
				t.Fatalf("at end: %v, want EOF", err)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		fr := frameReader{r: bytes.NewReader(stream), max: 100}
		if _, err := fr.next(); err != nil {
			t.Fatal(err)
		}
		// the unknown frame is skipped; the 10000-byte one is refused
		if _, err := fr.next(); err != protocol.ErrFrameTooLarge {
			t.Fatalf("got %v, want ErrFrameTooLarge", err)
		}
	})
	t.Run("reserved flags", func(t *testing.T) {
		b := protocol.AppendFrame(nil, protocol.TypeData, 0x80, 0, nil)
		fr := frameReader{r: bytes.NewReader(b), max: 100}
		if _, err := fr.next(); err != protocol.ErrReservedFlags {
			t.Fatalf("got %v, want ErrReservedFlags", err)
		}
	})
}

func FuzzFrameReader(f *testing.F) {
	f.Add(protocol.AppendFrame(nil, protocol.TypeData, 1, 3, []byte("abc")))
	f.Add(protocol.AppendFrame(nil, protocol.Type(0x30), 0, 0, []byte("x")))
	f.Add([]byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := frameReader{r: bytes.NewReader(b), max: 1 << 10}
		for range len(b) + 1 {
			got, err := fr.next()
			if err != nil {
				return
			}
			if len(got.Payload) > 1<<10 || !got.Type.Known() {
				t.Fatalf("bad frame %+v", got)
			}
		}
	})
}
