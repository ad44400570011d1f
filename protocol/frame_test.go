package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// sliceReader adapts a byte slice to Reader for tests of ReadFrame.
type sliceReader struct{ b []byte }

func (r *sliceReader) Len() int { return len(r.b) }
func (r *sliceReader) Peek(n int) ([]byte, error) {
	if n > len(r.b) {
		return nil, ErrIncomplete
	}
	return r.b[:n], nil
}
func (r *sliceReader) Next(n int) ([]byte, error) {
	p, err := r.Peek(n)
	if err == nil {
		r.b = r.b[n:]
	}
	return p, err
}

func rawFrame(length uint32, t Type, flags Flags, seq uint32, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, length)
	b = append(b, byte(t), byte(flags))
	b = binary.BigEndian.AppendUint32(b, seq)
	return append(b, body...)
}

func TestDecode(t *testing.T) {
	data := AppendFrame(nil, TypeData, FlagAckRequested, 7, []byte("hello"))
	tests := []struct {
		name    string
		in      []byte
		max     int
		wantErr error
		want    Frame
		wantN   int
	}{
		{"data", data, DefaultMaxFrame, nil, Frame{TypeData, FlagAckRequested, 7, []byte("hello")}, len(data)},
		{"empty ping", AppendFrame(nil, TypePing, 0, 0, nil), DefaultMaxFrame, nil, Frame{TypePing, 0, 0, []byte{}}, 10},
		{"short", data[:3], DefaultMaxFrame, ErrIncomplete, Frame{}, 0},
		{"body missing", data[:12], DefaultMaxFrame, ErrIncomplete, Frame{}, 0},
		{"length 5", rawFrame(5, TypeData, 0, 0, nil), DefaultMaxFrame, ErrShortLength, Frame{}, 0},
		{"length 0", rawFrame(0, TypeData, 0, 0, nil), DefaultMaxFrame, ErrShortLength, Frame{}, 0},
		{"oversize, header only", rawFrame(6+65537, TypeData, 0, 0, nil)[:4], DefaultMaxFrame, ErrFrameTooLarge, Frame{}, 0},
		{"exactly max", AppendFrame(nil, TypeData, 0, 0, make([]byte, 100)), 100, nil, Frame{TypeData, 0, 0, make([]byte, 100)}, 110},
		{"max+1", AppendFrame(nil, TypeData, 0, 0, make([]byte, 101)), 100, ErrFrameTooLarge, Frame{}, 0},
		{"max uint32", rawFrame(1<<32-1, TypeData, 0, 0, nil), DefaultMaxFrame, ErrFrameTooLarge, Frame{}, 0},
		{"unknown type", rawFrame(6, 0x05, 0, 0, nil), DefaultMaxFrame, ErrUnknownType, Frame{}, 0},
		{"reserved flag", rawFrame(6, TypeData, 0x02, 0, nil), DefaultMaxFrame, ErrReservedFlags, Frame{}, 0},
		{"reserved high flag", rawFrame(6, TypeData, 0x80, 0, nil), DefaultMaxFrame, ErrReservedFlags, Frame{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, err := Decode(tt.in, tt.max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if n != tt.wantN || f.Type != tt.want.Type || f.Flags != tt.want.Flags || f.Seq != tt.want.Seq || !bytes.Equal(f.Payload, tt.want.Payload) {
				t.Fatalf("got %+v n=%d, want %+v n=%d", f, n, tt.want, tt.wantN)
			}
			// The stream decoder agrees with the slice decoder.
			rf, rerr := ReadFrame(&sliceReader{tt.in}, tt.max)
			if !errors.Is(rerr, tt.wantErr) {
				t.Fatalf("ReadFrame err = %v, want %v", rerr, tt.wantErr)
			}
			if rerr == nil && (rf.Seq != f.Seq || !bytes.Equal(rf.Payload, f.Payload)) {
				t.Fatalf("ReadFrame %+v != Decode %+v", rf, f)
			}
		})
	}
}

func TestCodeOf(t *testing.T) {
	if c := CodeOf(ErrFrameTooLarge); c != CodeTooLarge {
		t.Fatalf("CodeOf(ErrFrameTooLarge) = %d", c)
	}
	if c := CodeOf(errors.New("x")); c != CodeInternal {
		t.Fatalf("CodeOf(other) = %d", c)
	}
}

func TestDecodeZeroAlloc(t *testing.T) {
	in := AppendFrame(nil, TypeData, FlagAckRequested, 1, make([]byte, 64))
	out := make([]byte, 0, 256)
	sr := &sliceReader{}
	allocs := testing.AllocsPerRun(1000, func() {
		f, _, err := Decode(in, DefaultMaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		out = AppendFrame(out[:0], f.Type, f.Flags, f.Seq, f.Payload)
		sr.b = in
		if _, err := ReadFrame(sr, DefaultMaxFrame); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("decode+encode allocates %.1f per frame, want 0", allocs)
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add(AppendFrame(nil, TypeData, FlagAckRequested, 1, []byte("payload")))
	f.Add(AppendFrame(nil, TypePing, 0, 0, nil))
	f.Add(rawFrame(5, TypeData, 0, 0, nil))
	f.Add(rawFrame(1<<32-1, TypeData, 0, 0, nil))
	f.Add(rawFrame(6, 0x7e, 0x03, 9, nil))
	hello, _ := EncodeHello(&Hello{V: 1, ID: "dev-1", Tags: map[string]string{"ver": "1"}})
	f.Add(AppendFrame(nil, TypeHello, 0, 0, hello))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := Decode(b, 1024)
		if err != nil {
			return
		}
		if n < HeaderSize || n > len(b) || len(fr.Payload) > 1024 {
			t.Fatalf("bad n=%d payload=%d", n, len(fr.Payload))
		}
		// Round trip: re-encoding gives back the same bytes.
		if re := AppendFrame(nil, fr.Type, fr.Flags, fr.Seq, fr.Payload); !bytes.Equal(re, b[:n]) {
			t.Fatalf("round trip mismatch:\n%x\n%x", re, b[:n])
		}
	})
}

func BenchmarkDecodeData(b *testing.B) {
	for _, size := range []int{16, 64, 1024, 16384} {
		in := AppendFrame(nil, TypeData, FlagAckRequested, 1, make([]byte, size))
		b.Run(itoa(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if _, _, err := Decode(in, DefaultMaxFrame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeData(b *testing.B) {
	for _, size := range []int{16, 64, 1024, 16384} {
		payload := make([]byte, size)
		out := make([]byte, 0, size+HeaderSize)
		b.Run(itoa(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size + HeaderSize))
			for b.Loop() {
				out = AppendFrame(out[:0], TypeData, FlagAckRequested, 1, payload)
			}
		})
	}
}

func itoa(n int) string { return fmtInt(n) }

func fmtInt(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
