package protocol

import (
	"bytes"
	"errors"
	"testing"
)

func TestLinkRoundTrip(t *testing.T) {
	ext, err := EncodeLinkExt(&LinkExt{Device: "dev-1", Tags: map[string]string{"ver": "2"}, Reason: "migrated", State: []byte{1, 2, 3}, LastUp: 7})
	if err != nil {
		t.Fatal(err)
	}
	sid := SessionID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	tests := []Envelope{
		{Kind: LinkUp, Session: sid, Epoch: 3, Seq: 9, Flags: FlagAckRequested, Payload: []byte("hello")},
		{Kind: LinkDown, Session: sid, Epoch: 1 << 40, Seq: 1<<32 - 1, Payload: make([]byte, 70000)},
		{Kind: LinkUpAck, Session: sid, Epoch: 200, Seq: 300},
		{Kind: LinkOpen, Session: sid, Epoch: 1, Ext: ext},
		{Kind: LinkPing},
	}
	var stream []byte
	for i := range tests {
		stream = AppendLinkFrame(stream, &tests[i])
	}
	for i, want := range tests {
		got, n, err := DecodeLinkFrame(stream)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		stream = stream[n:]
		if got.Kind != want.Kind || got.Session != want.Session || got.Epoch != want.Epoch || got.Seq != want.Seq ||
			got.Flags != want.Flags || !bytes.Equal(got.Payload, want.Payload) || !bytes.Equal(got.Ext, want.Ext) {
			t.Fatalf("%d: got %+v want %+v", i, got, want)
		}
	}
	if len(stream) != 0 {
		t.Fatalf("%d bytes left", len(stream))
	}
	e, _, _ := DecodeLinkFrame(AppendLinkFrame(nil, &tests[3]))
	x, err := DecodeLinkExt(e.Ext)
	if err != nil || x.Device != "dev-1" || x.Tags["ver"] != "2" || x.Reason != "migrated" || x.LastUp != 7 || len(x.State) != 3 {
		t.Fatalf("ext %+v %v", x, err)
	}
}

func TestLinkDecodeErrors(t *testing.T) {
	good := AppendLinkFrame(nil, &Envelope{Kind: LinkUp, Payload: []byte("x")})
	bad := func(mut func([]byte)) []byte {
		b := append([]byte(nil), good...)
		mut(b)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"short", good[:3], ErrIncomplete},
		{"body missing", good[:len(good)-1], ErrIncomplete},
		{"too large", []byte{0x7f, 0xff, 0xff, 0xff}, ErrLinkTooLarge},
		{"not an array", bad(func(b []byte) { b[4] = 0x90 }), ErrLinkMalformed},
		{"version 2", bad(func(b []byte) { b[5] = 2 }), ErrLinkVersion},
		{"session not 16", bad(func(b []byte) { b[8] = 15 }), ErrLinkMalformed},
		{"ext not a map", bad(func(b []byte) { b[len(b)-1] = 0x01 }), ErrLinkMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := DecodeLinkFrame(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLinkHotPathZeroAlloc(t *testing.T) {
	e := Envelope{Kind: LinkUp, Epoch: 5, Seq: 77, Flags: FlagAckRequested, Payload: make([]byte, 64)}
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(1000, func() {
		buf = AppendLinkFrame(buf[:0], &e)
		if _, _, err := DecodeLinkFrame(buf); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("link encode+decode allocates %.1f", allocs)
	}
}

func FuzzDecodeLinkFrame(f *testing.F) {
	ext, _ := EncodeLinkExt(&LinkExt{Device: "d", Tags: map[string]string{"a": "b"}, State: []byte{1}})
	f.Add(AppendLinkFrame(nil, &Envelope{Kind: LinkUp, Seq: 1, Payload: []byte("p")}))
	f.Add(AppendLinkFrame(nil, &Envelope{Kind: LinkOpen, Epoch: 300, Ext: ext}))
	f.Add([]byte{0, 0, 0, 1, 0x98})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, n, err := DecodeLinkFrame(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("n %d > %d", n, len(b))
		}
		_, _ = DecodeLinkExt(e.Ext)
		re := AppendLinkFrame(nil, &e)
		e2, _, err := DecodeLinkFrame(re)
		if err != nil || e2.Kind != e.Kind || e2.Seq != e.Seq || e2.Epoch != e.Epoch || !bytes.Equal(e2.Payload, e.Payload) || !bytes.Equal(e2.Ext, e.Ext) {
			t.Fatalf("re-encode mismatch: %v %+v %+v", err, e, e2)
		}
	})
}

func BenchmarkLinkUp(b *testing.B) {
	e := Envelope{Kind: LinkUp, Epoch: 5, Seq: 77, Flags: FlagAckRequested, Payload: make([]byte, 64)}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(64)
	for b.Loop() {
		buf = AppendLinkFrame(buf[:0], &e)
		if _, _, err := DecodeLinkFrame(buf); err != nil {
			b.Fatal(err)
		}
	}
}
