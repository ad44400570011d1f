package protocol

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// chunkReader returns at most n bytes per Read, then io.EOF.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[k:]
	return k, nil
}

// readers gives a stream whole, a byte at a time and in halves.
func readers(stream []byte) map[string]func() io.Reader {
	return map[string]func() io.Reader{
		"whole":              func() io.Reader { return bytes.NewReader(stream) },
		"one byte at a time": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"half":               func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) },
	}
}

func TestStreamReaderFrames(t *testing.T) {
	var stream []byte
	stream = AppendFrame(stream, TypeData, 0, 0, []byte("first"))
	stream = AppendFrame(stream, Type(0x55), 0, 0, []byte("from the future")) // skipped
	big := bytes.Repeat([]byte("x"), 10000)
	stream = AppendFrame(stream, TypeData, FlagAckRequested, 7, big)
	stream = AppendFrame(stream, TypePing, 0, 0, nil)
	want := []Frame{
		{Type: TypeData, Payload: []byte("first")},
		{Type: TypeData, Flags: FlagAckRequested, Seq: 7, Payload: big},
		{Type: TypePing, Payload: []byte{}},
	}
	for name, r := range readers(stream) {
		t.Run(name, func(t *testing.T) {
			fr := NewFrameReader(r(), 1<<20)
			for _, w := range want {
				f, err := fr.NextFrame()
				if err != nil || f.Type != w.Type || f.Flags != w.Flags || f.Seq != w.Seq || !bytes.Equal(f.Payload, w.Payload) {
					t.Fatalf("NextFrame() = %v %d %d %d bytes, %v; want %v", f.Type, f.Flags, f.Seq, len(f.Payload), err, w.Type)
				}
			}
			if _, err := fr.NextFrame(); err != io.EOF {
				t.Fatalf("at end: %v, want EOF", err)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		fr := NewFrameReader(bytes.NewReader(stream), 100)
		if _, err := fr.NextFrame(); err != nil {
			t.Fatal(err)
		}
		// the unknown frame is skipped; the 10000-byte one is refused, for good
		for range 2 {
			if _, err := fr.NextFrame(); err != ErrFrameTooLarge {
				t.Fatalf("got %v, want ErrFrameTooLarge", err)
			}
		}
	})
	t.Run("reserved flags", func(t *testing.T) {
		fr := NewFrameReader(bytes.NewReader(AppendFrame(nil, TypeData, 0x80, 0, nil)), 100)
		if _, err := fr.NextFrame(); err != ErrReservedFlags {
			t.Fatalf("got %v, want ErrReservedFlags", err)
		}
	})
	t.Run("short length", func(t *testing.T) {
		fr := NewFrameReader(bytes.NewReader([]byte{0, 0, 0, 1, 0}), 100)
		if _, err := fr.NextFrame(); err != ErrShortLength {
			t.Fatalf("got %v, want ErrShortLength", err)
		}
	})
}

func TestStreamReaderLinks(t *testing.T) {
	sid := SessionID{1, 2, 3}
	var stream []byte
	stream = AppendLinkFrame(stream, &Envelope{Kind: LinkUp, Session: sid, Epoch: 2, Seq: 1, Payload: []byte("a")})
	bad := AppendLinkFrame(nil, &Envelope{Kind: LinkUp})
	bad[4] = 0x90 // not an array of 8: this frame alone is skipped
	stream = append(stream, bad...)
	stream = AppendLinkFrame(stream, &Envelope{Kind: LinkDown, Session: sid, Payload: make([]byte, 200<<10)})
	stream = AppendLinkFrame(stream, &Envelope{Kind: LinkPing})
	for name, r := range readers(stream) {
		t.Run(name, func(t *testing.T) {
			lr := NewLinkReader(r())
			var kinds []LinkKind
			var malformed int
			for {
				e, err := lr.NextEnvelope()
				if errors.Is(err, ErrLinkMalformed) {
					malformed++
					continue
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				kinds = append(kinds, e.Kind)
				if e.Kind == LinkDown && len(e.Payload) != 200<<10 {
					t.Fatalf("down payload %d bytes", len(e.Payload))
				}
			}
			if malformed != 1 || len(kinds) != 3 || kinds[0] != LinkUp || kinds[1] != LinkDown || kinds[2] != LinkPing {
				t.Fatalf("kinds %v, malformed %d", kinds, malformed)
			}
		})
	}
	t.Run("limit", func(t *testing.T) {
		lr := NewLinkReader(bytes.NewReader(stream))
		lr.SetLimit(LinkAuthMaxFrame)
		if _, err := lr.NextEnvelope(); err != nil {
			t.Fatal(err)
		}
		if _, err := lr.NextEnvelope(); !errors.Is(err, ErrLinkMalformed) {
			t.Fatalf("bad frame: %v", err)
		}
		// the 200 KB frame is over the limit: refused before its body is read, for good
		for range 2 {
			if _, err := lr.NextEnvelope(); err != ErrLinkTooLarge {
				t.Fatalf("got %v, want ErrLinkTooLarge", err)
			}
		}
	})
	t.Run("buffered", func(t *testing.T) {
		two := AppendLinkFrame(AppendLinkFrame(nil, &Envelope{Kind: LinkPing}), &Envelope{Kind: LinkPong})
		lr := NewLinkReader(bytes.NewReader(two))
		if lr.Buffered() {
			t.Fatal("buffered before any read")
		}
		if e, err := lr.NextEnvelope(); err != nil || e.Kind != LinkPing || !lr.Buffered() {
			t.Fatalf("first: %v %v, buffered %v", e.Kind, err, lr.Buffered())
		}
		if e, err := lr.NextEnvelope(); err != nil || e.Kind != LinkPong || lr.Buffered() {
			t.Fatalf("second: %v %v, buffered %v", e.Kind, err, lr.Buffered())
		}
	})
}

// loopReader serves the same bytes forever.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

func TestStreamReaderZeroAlloc(t *testing.T) {
	link := AppendLinkFrame(nil, &Envelope{Kind: LinkUp, Epoch: 5, Seq: 77, Flags: FlagAckRequested, Payload: make([]byte, 64)})
	lr := NewLinkReader(&loopReader{b: link})
	if allocs := testing.AllocsPerRun(1000, func() {
		if _, err := lr.NextEnvelope(); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Fatalf("link envelope read allocates %.1f", allocs)
	}
	fr := NewFrameReader(&loopReader{b: AppendFrame(nil, TypeData, FlagAckRequested, 9, make([]byte, 64))}, DefaultMaxFrame)
	if allocs := testing.AllocsPerRun(1000, func() {
		if _, err := fr.NextFrame(); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Fatalf("device frame read allocates %.1f", allocs)
	}
}

// FuzzStreamReader feeds arbitrary bytes, in reads of arbitrary size, to
// both kinds of stream reader: they must never panic, never loop, never
// hold a frame over their limit, and every envelope or frame they return
// must re-encode to one that decodes the same.
func FuzzStreamReader(f *testing.F) {
	ext, _ := EncodeLinkExt(&LinkExt{Node: "gw", Nonce: make([]byte, LinkNonceSize)})
	var link []byte
	link = AppendLinkFrame(link, &Envelope{Kind: LinkHello, Ext: ext})
	link = AppendLinkFrame(link, &Envelope{Kind: LinkUp, Epoch: 2, Seq: 1, Flags: FlagAckRequested, Payload: []byte("hi")})
	link = AppendLinkFrame(link, &Envelope{Kind: LinkPing})
	var dev []byte
	dev = AppendFrame(dev, TypeData, FlagAckRequested, 3, []byte("abc"))
	dev = AppendFrame(dev, Type(0x30), 0, 0, []byte("x"))
	dev = AppendFrame(dev, TypePing, 0, 0, nil)
	for _, seed := range [][]byte{link, dev, {0, 0, 0, 1, 0x98}, {0x7f, 0xff, 0xff, 0xff}, {0, 0, 0, 6}} {
		f.Add(seed, uint8(7), true)
		f.Add(seed, uint8(1), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8, isLink bool) {
		const limit = 1 << 12
		r := &chunkReader{b: in, n: int(chunk%32) + 1}
		if isLink {
			lr := NewLinkReader(r)
			lr.SetLimit(limit)
			for range len(in) + 1 {
				e, err := lr.NextEnvelope()
				if errors.Is(err, ErrLinkMalformed) || errors.Is(err, ErrLinkVersion) {
					continue
				}
				if err != nil {
					return
				}
				_, _ = DecodeLinkExt(e.Ext)
				got, _, err := DecodeLinkFrame(AppendLinkFrame(nil, &e))
				if err != nil || got.Kind != e.Kind || got.Seq != e.Seq || got.Epoch != e.Epoch || !bytes.Equal(got.Payload, e.Payload) {
					t.Fatalf("re-encode: %v %+v %+v", err, got, e)
				}
			}
			t.Fatal("link reader did not end")
		}
		fr := NewFrameReader(r, limit)
		for range len(in) + 1 {
			got, err := fr.NextFrame()
			if err != nil {
				return
			}
			if len(got.Payload) > limit || !got.Type.Known() {
				t.Fatalf("bad frame %+v", got)
			}
			re, _, err := Decode(AppendFrame(nil, got.Type, got.Flags, got.Seq, got.Payload), limit)
			if err != nil || re.Type != got.Type || re.Seq != got.Seq || !bytes.Equal(re.Payload, got.Payload) {
				t.Fatalf("re-encode: %v %+v %+v", err, re, got)
			}
		}
		t.Fatal("frame reader did not end")
	})
}
