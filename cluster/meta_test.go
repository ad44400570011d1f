package cluster

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func sampleMetas() []Meta {
	return []Meta{
		{},
		{Role: RoleGateway, Link: "10.0.0.1:7500", Version: "1.2.3"},
		{Role: RoleGateway, Link: "10.0.0.1:7500", Admin: "10.0.0.1:7501"},
		{Role: RoleBackend, Shard: "a", Link: "127.0.0.1:7600", State: StateDraining, Version: "v0.1.0-dev",
			Labels: map[string]string{"canary": "true", "zone": "eu-1", "": "x"}},
		{Role: Role(9), State: State(7)},
	}
}

func TestMetaRoundTrip(t *testing.T) {
	for _, m := range sampleMetas() {
		b, err := EncodeMeta(m)
		if err != nil {
			t.Fatalf("encode %+v: %v", m, err)
		}
		got, err := DecodeMeta(b)
		if err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		if !got.Equal(m) {
			t.Errorf("round trip: got %+v, want %+v", got, m)
		}
		again, _ := EncodeMeta(got)
		if !bytes.Equal(again, b) {
			t.Errorf("encoding not deterministic: %x then %x", b, again)
		}
	}
}

func TestMetaDeterministicLabels(t *testing.T) {
	labels := map[string]string{}
	for _, k := range strings.Split("a b c d e f g h i j k l m n o p", " ") {
		labels[k] = k + k
	}
	first, _ := EncodeMeta(Meta{Role: RoleGateway, Labels: labels})
	for range 20 {
		b, _ := EncodeMeta(Meta{Role: RoleGateway, Labels: labels})
		if !bytes.Equal(b, first) {
			t.Fatal("same labels, different bytes: memberlist would report a spurious update")
		}
	}
}

func TestMetaTooLarge(t *testing.T) {
	m := Meta{Role: RoleGateway, Labels: map[string]string{}}
	for i := 0; ; i++ {
		m.Labels[strings.Repeat("k", 10)+string(rune('a'+i%26))+strings.Repeat("x", i/26)] = strings.Repeat("v", 20)
		if _, err := EncodeMeta(m); err != nil {
			var se *MetaSizeError
			if !errors.As(err, &se) || se.Limit != MetaMaxSize || se.Size <= MetaMaxSize {
				t.Fatalf("err = %v, want *MetaSizeError over %d", err, MetaMaxSize)
			}
			if !errors.Is(err, ErrInvalidMeta) || m.Validate() == nil {
				t.Fatalf("size error should be ErrInvalidMeta and fail Validate: %v", err)
			}
			if !strings.Contains(err.Error(), "512") {
				t.Errorf("error should name the limit: %v", err)
			}
			return
		}
		if i > 100 {
			t.Fatal("never too large")
		}
	}
}

func TestMetaValidate(t *testing.T) {
	tests := []struct {
		name string
		m    Meta
		ok   bool
	}{
		{"gateway", Meta{Role: RoleGateway}, true},
		{"backend", Meta{Role: RoleBackend, Shard: "a"}, true},
		{"no role", Meta{}, false},
		{"unknown role", Meta{Role: 3}, false},
		{"backend without shard", Meta{Role: RoleBackend}, false},
		{"unknown state", Meta{Role: RoleGateway, State: 5}, false},
		{"empty label key", Meta{Role: RoleGateway, Labels: map[string]string{"": "x"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidMeta) {
				t.Fatalf("err %v does not wrap ErrInvalidMeta", err)
			}
		})
	}
}

func mp(t testing.TB, v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeMetaHostile(t *testing.T) {
	good, _ := EncodeMeta(sampleMetas()[2])
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"empty", nil, true},
		{"nil map", []byte{0xc0}, true},
		{"not a map", mp(t, []int{1, 2}), false},
		{"map32 claiming 4G entries", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, false},
		{"str32 claiming 4G bytes", []byte{0x81, 0xa1, 's', 0xdb, 0xff, 0xff, 0xff, 0xff}, false},
		{"labels map claiming 65535", []byte{0x81, 0xa1, 'l', 0xde, 0xff, 0xff}, false},
		{"truncated", good[:len(good)-3], false},
		{"trailing bytes", append(append([]byte{}, good...), 0x01), false},
		{"role out of range", mp(t, map[string]any{"r": 300}), false},
		{"negative state", mp(t, map[string]any{"t": -1}), false},
		{"role as string", mp(t, map[string]any{"r": "gateway"}), false},
		{"unknown key skipped", mp(t, map[string]any{"r": 1, "zz": []any{1, "x", map[string]any{"a": nil}}}), true},
		{"too big", make([]byte, MetaMaxSize+1), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeMeta(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("DecodeMeta(%x) err = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidMeta) {
				t.Fatalf("err %v does not wrap ErrInvalidMeta", err)
			}
		})
	}
}

func TestDecodeMetaAllocBounded(t *testing.T) {
	in := []byte{0x81, 0xa1, 'l', 0xdf, 0x00, 0x0f, 0xff, 0xff} // labels: map32 of 1M entries
	allocs := testing.AllocsPerRun(10, func() { _, _ = DecodeMeta(in) })
	if allocs > 20 {
		t.Fatalf("%v allocations for an 8-byte lie", allocs)
	}
}

// FuzzDecodeMeta: metadata arrives from the network. Decoding never
// panics, and whatever decodes re-encodes (if it fits) to the same Meta.
func FuzzDecodeMeta(f *testing.F) {
	for _, m := range sampleMetas() {
		b, _ := EncodeMeta(m)
		f.Add(b)
	}
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0xa1, 'l', 0x82, 0xa1, 'a', 0xa1, 'b', 0xa1, 'c', 0xc0})
	f.Add(mp(f, map[string]any{"r": 2, "s": "x", "zz": []any{1.5, true}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		enc, err := EncodeMeta(m)
		if err != nil {
			var se *MetaSizeError
			if !errors.As(err, &se) {
				t.Fatalf("decoded %+v does not encode: %v", m, err)
			}
			return
		}
		back, err := DecodeMeta(enc)
		if err != nil {
			t.Fatalf("re-decode of %x: %v", enc, err)
		}
		if !back.Equal(m) {
			t.Fatalf("round trip: %+v became %+v", m, back)
		}
	})
}
