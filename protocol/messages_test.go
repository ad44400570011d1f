package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func mp(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeHello(t *testing.T) {
	tags17 := map[string]string{}
	for i := 0; i < 17; i++ {
		tags17[fmtInt(i)] = "x"
	}
	big := map[string]any{"v": 1, "id": "d", "pad": strings.Repeat("x", 5000)}
	bigBadID := map[string]any{"v": 1, "id": "bad id", "pad": strings.Repeat("x", 5000)}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"ok", mp(t, map[string]any{"v": 1, "id": "dev-1"}), nil},
		{"ok all fields", mp(t, map[string]any{"v": 1, "id": "d", "token": "1.x", "resume": []byte{1}, "last": 3, "tags": map[string]string{"ver": "2"}, "extra": []int{1}}), nil},
		{"not a map", mp(t, []int{1}), ErrHelloNotMap},
		{"empty payload", nil, ErrHelloNotMap},
		{"missing v", mp(t, map[string]any{"id": "d"}), ErrHelloVersion},
		{"v 2", mp(t, map[string]any{"v": 2, "id": "d"}), ErrHelloVersion},
		{"v string", mp(t, map[string]any{"v": "1", "id": "d"}), ErrHelloVersion},
		{"missing id", mp(t, map[string]any{"v": 1}), ErrHelloID},
		{"empty id", mp(t, map[string]any{"v": 1, "id": ""}), ErrHelloID},
		{"space in id", mp(t, map[string]any{"v": 1, "id": "a b"}), ErrHelloID},
		{"id 129", mp(t, map[string]any{"v": 1, "id": strings.Repeat("a", 129)}), ErrHelloID},
		{"id 128", mp(t, map[string]any{"v": 1, "id": strings.Repeat("a", 128)}), nil},
		{"id not str", mp(t, map[string]any{"v": 1, "id": 5}), ErrHelloID},
		{"17 tags", mp(t, map[string]any{"v": 1, "id": "d", "tags": tags17}), ErrHelloTags},
		{"too large", mp(t, big), ErrHelloTooLarge},
		{"too large and bad id: 400 first", mp(t, bigBadID), ErrHelloID},
		{"trailing", append(mp(t, map[string]any{"v": 1, "id": "d"}), 0xc0), ErrHelloTrailing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := DecodeHello(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && h.V != 1 {
				t.Fatalf("v = %d", h.V)
			}
		})
	}
}

func TestHelloRoundTrip(t *testing.T) {
	in := Hello{V: 1, ID: "dev-9", Token: "12.ab", Resume: []byte{1, 2}, Last: 42, Tags: map[string]string{"model": "x"}}
	p, err := EncodeHello(&in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeHello(p)
	if err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || out.Token != in.Token || out.Last != 42 || string(out.Resume) != "\x01\x02" || out.Tags["model"] != "x" {
		t.Fatalf("round trip: %+v", out)
	}
}

func TestWelcomeUnknownKeysIgnored(t *testing.T) {
	p := mp(t, map[string]any{"session": "s", "hb": 30, "future": map[string]int{"a": 1}})
	var w Welcome
	if err := Unmarshal(p, &w); err != nil || w.Session != "s" || w.HB != 30 {
		t.Fatalf("w=%+v err=%v", w, err)
	}
}

func FuzzDecodeHello(f *testing.F) {
	f.Add(mp(f, map[string]any{"v": 1, "id": "dev-1"}))
	f.Add(mp(f, map[string]any{"v": 1, "id": "d", "token": "1.x", "resume": []byte{1}, "last": 3, "tags": map[string]string{"ver": "2"}}))
	f.Add([]byte{0x81, 0xa1, 0x76})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHello(b)
		if err != nil {
			if CodeOf(err) != CodeBadRequest && CodeOf(err) != CodeTooLarge {
				t.Fatalf("unexpected code for %v", err)
			}
			return
		}
		if !ValidDeviceID(h.ID) || h.V != 1 || len(h.Tags) > MaxTags || len(b) > MaxHelloPayload {
			t.Fatalf("accepted invalid hello %+v", h)
		}
		p, err := EncodeHello(&h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeHello(p); err != nil && len(p) <= MaxHelloPayload {
			t.Fatalf("re-encoded hello rejected: %v", err)
		}
	})
}

// FuzzUnmarshalMaps: the maps a client decodes from a gateway never panic
// the decoder, whatever the bytes.
func FuzzUnmarshalMaps(f *testing.F) {
	f.Add(mp(f, map[string]any{"session": "s", "resume": []byte{1}, "hb": 30, "max_frame": 65536, "node": "n", "resumed": true, "last": 9}))
	f.Add(mp(f, map[string]any{"reason": "draining", "retry_ms": 100, "redirect": []string{"a:1"}}))
	f.Add(mp(f, map[string]any{"code": 400, "message": "x"}))
	f.Add([]byte{0x81, 0xc4, 0x01, 0x61, 0x01}) // a map with a bin key
	f.Fuzz(func(t *testing.T, b []byte) {
		var w Welcome
		_ = Unmarshal(b, &w)
		var g GoAway
		_ = Unmarshal(b, &g)
		var e ErrorMsg
		_ = Unmarshal(b, &e)
	})
}

// TestMapsRejectLyingLengths: headers that declare more than the payload
// holds are 400 without a large allocation, from DecodeHello and from
// Unmarshal, and so is nesting past MaxMsgpackDepth from Unmarshal; the
// pooled decoder no longer grows with every such input
// (FuzzUnmarshalMaps found a worker running out of memory that way).
func TestMapsRejectLyingLengths(t *testing.T) {
	deep := []byte{0x81, 0xa1, 'x'}
	for range MaxMsgpackDepth + 1 {
		deep = append(deep, 0x91)
	}
	deep = append(deep, 0xc0)
	for _, p := range [][]byte{
		{0x87, 0xdb, 0xdd, 0xeb, 0x1d, 0x01, 0x00, 0xd6},   // str32 key of 3.7 GB
		{0x8e, 0xc6, 0xb0, 0xb0, 0xb0, 0xb0},               // bin32 key
		{0x81, 0xa1, 'x', 0xdd, 0x7f, 0xff, 0xff, 0xff},    // array32 of 2^31-1
		{0x81, 0xa1, 'x', 0xdf, 0x7f, 0xff, 0xff, 0xff},    // map32 of 2^31-1
		{0x81, 0xa1, 'x', 0xc9, 0xff, 0xff, 0xff, 0xff, 1}, // ext32
		{0x81, 0xa1, 'x', 0xc1},                            // reserved code
		deep,
	} {
		if _, err := DecodeHello(p); !errors.Is(err, ErrHelloMalformed) && !bytes.Equal(p, deep) {
			t.Errorf("DecodeHello(% x) = %v, want %v", p, err, ErrHelloMalformed)
		}
		var w Welcome
		allocs := testing.AllocsPerRun(20, func() {
			if err := Unmarshal(p, &w); err == nil {
				t.Fatalf("Unmarshal(% x) accepted", p)
			}
		})
		if allocs > 3 { // the error value and its message
			t.Errorf("Unmarshal(% x): %.0f allocations", p, allocs)
		}
	}
	// Nesting up to the limit is fine, and so is every kind of value.
	ok := []byte{0x84, 0xa1, 'v', 0x01, 0xa2, 'i', 'd', 0xa1, 'd',
		0xa1, 'x', 0x93, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xd6, 1, 1, 2, 3, 4, 0xc4, 1, 9,
		0xa1, 'y', 0xde, 0, 1, 0xa1, 'k', 0x92, 0xc3, 0xd1, 0xff, 0xff}
	if _, err := DecodeHello(ok); err != nil {
		t.Errorf("DecodeHello(% x): %v", ok, err)
	}
	if n, err := msgpackLen(deep[3:len(deep)-2], MaxMsgpackDepth); err == nil {
		t.Errorf("a cut value accepted, length %d", n)
	}
	if n, err := msgpackLen(deep[4:], MaxMsgpackDepth); err != nil || n != len(deep)-4 {
		t.Errorf("%d levels: %d, %v", MaxMsgpackDepth, n, err)
	}
}

// AppendWelcome writes what Marshal writes, byte for byte, over every
// length class of the strings and the bytes (fixstr, str8, str16; nil,
// bin8, bin16) and every size class of the ints, positive and negative.
func TestAppendWelcomeIsMarshal(t *testing.T) {
	strs := []string{"", "a", strings.Repeat("n", 31), strings.Repeat("n", 32), strings.Repeat("n", 255), strings.Repeat("n", 256), strings.Repeat("n", 70000)}
	bins := [][]byte{nil, {}, make([]byte, 41), make([]byte, 255), make([]byte, 256), make([]byte, 70000)}
	ints := []int{0, 1, 127, 128, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, -1, -32, -33, -128, -129, -32768, -32769, -1 << 31, -1<<31 - 1}
	lasts := []uint32{0, 1, 1<<32 - 1}
	n := 0
	check := func(w Welcome) {
		t.Helper()
		want, err := Marshal(&w)
		if err != nil {
			t.Fatal(err)
		}
		got := AppendWelcome([]byte("x"), &w)
		if !bytes.Equal(got[1:], want) || got[0] != 'x' {
			t.Fatalf("AppendWelcome: got % x, want % x", got[1:min(len(got), 80)], want[:min(len(want), 80)])
		}
		n++
	}
	for i, s := range strs {
		for j, b := range bins {
			check(Welcome{Session: s, Resume: b, Node: strs[(i+j)%len(strs)], Resumed: (i+j)%2 == 0})
		}
	}
	for i, v := range ints {
		for _, last := range lasts {
			check(Welcome{Session: "s", HB: v, MaxFrame: ints[(i+3)%len(ints)], Last: last})
		}
	}
	if n == 0 {
		t.Fatal("nothing checked")
	}
}

// TestHelloUnknownKeysAnyDepth: PROTOCOL.md ignores unknown HELLO keys
// whatever they hold, so a value nested past MaxMsgpackDepth is skipped,
// not refused (a conformance probe got 400 for 16 nested arrays), as long
// as it is whole; the HELLO's size rule (413 past 4096 bytes) still
// applies, and a nested value cut short is still 400.
func TestHelloUnknownKeysAnyDepth(t *testing.T) {
	hello := func(depth int, cut bool) []byte {
		p := []byte{0x84, 0xa1, 'v', 0x01, 0xa2, 'i', 'd', 0xa3, 'd', 'e', 'v',
			0xa4, 'z', 'z', 'z', 'z'}
		for range depth {
			p = append(p, 0x91) // an array of one
		}
		if !cut {
			p = append(p, 0xc0)
		}
		// A known key after the deep one: the decoder must be past it.
		return append(p, 0xa4, 'l', 'a', 's', 't', 0x07)
	}
	for _, depth := range []int{MaxMsgpackDepth, MaxMsgpackDepth + 1, 100, MaxHelloPayload - 30} {
		h, err := DecodeHello(hello(depth, false))
		if err != nil || h.ID != "dev" || h.Last != 7 {
			t.Errorf("%d levels: %+v, %v; want the HELLO of dev with last 7", depth, h, err)
		}
	}
	if _, err := DecodeHello(hello(60000, false)); !errors.Is(err, ErrHelloTooLarge) {
		t.Errorf("60000 levels (over 4096 bytes): %v, want %v", err, ErrHelloTooLarge)
	}
	// Cut short: the trailing "last" pair is read as the deep value's
	// elements, and the map runs out of bytes.
	if _, err := DecodeHello(hello(100, true)); !errors.Is(err, ErrHelloMalformed) {
		t.Errorf("a deep value cut short: %v, want %v", err, ErrHelloMalformed)
	}
	// Unmarshal (the maps msgpack decodes by recursion) keeps its limit.
	var w Welcome
	if err := Unmarshal(hello(MaxMsgpackDepth+1, false), &w); err == nil {
		t.Errorf("Unmarshal accepted %d levels", MaxMsgpackDepth+1)
	}
}
