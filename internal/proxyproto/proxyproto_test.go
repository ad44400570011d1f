package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchyard-gw/switchyard/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m, nil) }

// V2 builds a version 2 header: command, family byte, the address block
// and TLVs, with the length field computed unless length >= 0 overrides
// it (to lie).
func v2(cmd Command, fam byte, length int, body ...[]byte) []byte {
	b := append([]byte{}, sigV2[:]...)
	b = append(b, 0x20|byte(cmd), fam)
	all := bytes.Join(body, nil)
	if length < 0 {
		length = len(all)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(length))
	return append(b, all...)
}

// inet4 is an AF_INET address block.
func inet4(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := append(s[:], d[:]...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

// inet6 is an AF_INET6 address block.
func inet6(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := append(s[:], d[:]...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

// tlv is one TLV.
func tlv(typ byte, v []byte) []byte {
	b := binary.BigEndian.AppendUint16([]byte{typ}, uint16(len(v)))
	return append(b, v...)
}

// valid are headers Parse accepts, with what it must return.
var valid = []struct {
	name string
	in   []byte
	want Header
}{
	{"v1 tcp4", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 7400\r\n"),
		Header{1, Proxy, ap("192.0.2.7:56324"), ap("198.51.100.1:7400")}},
	{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n"),
		Header{1, Proxy, ap("[2001:db8::7]:65535"), ap("[2001:db8::1]:0")}},
	{"v1 tcp6 mapped", []byte("PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n"),
		Header{1, Proxy, ap("[::ffff:192.0.2.7]:1"), ap("[::1]:2")}},
	{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Command: Proxy}},
	{"v1 unknown with addresses", []byte("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"),
		Header{Version: 1, Command: Proxy}},
	{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		Header{1, Proxy, ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
	{"v2 inet", v2(Proxy, 0x11, -1, inet4("192.0.2.7", "198.51.100.1", 56324, 7400)),
		Header{2, Proxy, ap("192.0.2.7:56324"), ap("198.51.100.1:7400")}},
	{"v2 inet6", v2(Proxy, 0x21, -1, inet6("2001:db8::7", "2001:db8::1", 443, 7400)),
		Header{2, Proxy, ap("[2001:db8::7]:443"), ap("[2001:db8::1]:7400")}},
	{"v2 inet with TLVs", v2(Proxy, 0x11, -1, inet4("10.1.2.3", "10.0.0.1", 1, 2),
		tlv(0x04, nil), tlv(0x05, []byte("unique-id")), tlv(0xEA, bytes.Repeat([]byte{7}, 300))),
		Header{2, Proxy, ap("10.1.2.3:1"), ap("10.0.0.1:2")}},
	{"v2 local", v2(Local, 0x00, -1), Header{Version: 2, Command: Local}},
	{"v2 local with a block to discard", v2(Local, 0x11, -1, []byte{1, 2, 3}), Header{Version: 2, Command: Local}},
	{"v2 proxy unspec", v2(Proxy, 0x00, -1, tlv(0x04, nil)), Header{Version: 2, Command: Proxy}},
	{"v2 proxy unix", v2(Proxy, 0x31, -1, make([]byte, 216)), Header{Version: 2, Command: Proxy}},
	{"v2 longest", v2(Proxy, 0x11, -1, inet4("10.1.2.3", "10.0.0.1", 1, 2), tlv(0xEE, make([]byte, MaxV2Payload-12-3))),
		Header{2, Proxy, ap("10.1.2.3:1"), ap("10.0.0.1:2")}},
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestParseValid: each valid header parses whole, alone and followed by
// the connection's own bytes (which Parse must leave alone).
func TestParseValid(t *testing.T) {
	for _, c := range valid {
		t.Run(c.name, func(t *testing.T) {
			for _, tail := range [][]byte{nil, []byte("\x00\x00\x00\x0aHELLO...")} {
				in := append(append([]byte{}, c.in...), tail...)
				h, n, more, err := Parse(in)
				if err != nil || more || n != len(c.in) || h != c.want {
					t.Fatalf("Parse = %+v, %d, %v, %v; want %+v, %d", h, n, more, err, c.want, len(c.in))
				}
				if h.Local() != !c.want.Source.IsValid() {
					t.Fatalf("Local() = %v", h.Local())
				}
			}
		})
	}
}

// TestParseTruncated: every proper prefix of a valid header needs more,
// never errs, never claims a header.
func TestParseTruncated(t *testing.T) {
	for _, c := range valid {
		for i := range len(c.in) {
			h, n, more, err := Parse(c.in[:i])
			if err != nil || !more || n != 0 || h != (Header{}) {
				t.Fatalf("%s cut at %d: %+v, %d, %v, %v; want needMore", c.name, i, h, n, more, err)
			}
		}
	}
}

// TestParseInvalid: malformed headers fail, with the sentinel that says
// how, as soon as the bytes show it.
func TestParseInvalid(t *testing.T) {
	inet := inet4("192.0.2.7", "198.51.100.1", 1, 2)
	long := "PROXY UNKNOWN " + strings.Repeat("x", MaxV1Header)
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"a HELLO frame", []byte("\x00\x00\x00\x12\x01\x00"), ErrNotProxy},
		{"HTTP", []byte("GET / HTTP/1.1\r\n"), ErrNotProxy},
		{"v1 bad prefix", []byte("PROXZ"), ErrNotProxy},
		{"v1 lower case", []byte("proxy TCP4"), ErrNotProxy},
		{"v1 no CRLF in 107 bytes", []byte(long), ErrMalformed},
		{"v1 bare LF", []byte("PROXY UNKNOWN\n"), ErrMalformed},
		{"v1 CR inside", []byte("PROXY TCP4\r 1"), ErrMalformed},
		{"v1 protocol", []byte("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n"), ErrMalformed},
		{"v1 empty protocol", []byte("PROXY \r\n"), ErrMalformed},
		{"v1 family mismatch", []byte("PROXY TCP4 ::1 ::1 1 2\r\n"), ErrMalformed},
		{"v1 family mismatch 6", []byte("PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n"), ErrMalformed},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), ErrMalformed},
		{"v1 three fields", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n"), ErrMalformed},
		{"v1 five fields", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n"), ErrMalformed},
		{"v1 double space", []byte("PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n"), ErrMalformed},
		{"v1 port range", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"), ErrMalformed},
		{"v1 port leading zero", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 01 2\r\n"), ErrMalformed},
		{"v1 port sign", []byte("PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n"), ErrMalformed},
		{"v1 address leading zero", []byte("PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n"), ErrMalformed},
		{"v2 bad signature", append(append([]byte{}, sigV2[:11]...), 'X'), ErrNotProxy},
		{"v2 version 1", append(append([]byte{}, sigV2[:]...), 0x11), ErrMalformed},
		{"v2 command 2", append(append([]byte{}, sigV2[:]...), 0x22), ErrMalformed},
		{"v2 family 4", append(append([]byte{}, sigV2[:]...), 0x21, 0x41), ErrMalformed},
		{"v2 transport 3", append(append([]byte{}, sigV2[:]...), 0x21, 0x13), ErrMalformed},
		{"v2 oversize", v2(Proxy, 0x11, MaxV2Payload+1)[:V2Fixed], ErrMalformed},
		{"v2 largest length field", v2(Proxy, 0x11, 0xFFFF)[:V2Fixed], ErrMalformed},
		{"v2 length short of inet", v2(Proxy, 0x11, 11, inet[:11]), ErrMalformed},
		{"v2 length short of inet6", v2(Proxy, 0x21, 12, inet), ErrMalformed},
		{"v2 length short of unix", v2(Proxy, 0x31, 12, inet), ErrMalformed},
		{"v2 TLV overruns", v2(Proxy, 0x11, -1, inet, []byte{0x05, 0x00, 0x09, 'a'}), ErrMalformed},
		{"v2 TLV header cut", v2(Proxy, 0x11, -1, inet, []byte{0x05, 0x00}), ErrMalformed},
		{"v2 length lies over a frame", v2(Proxy, 0x11, 20, inet, []byte("\x00\x00\x00\x12\x01\x00\x00\x00")), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, n, more, err := Parse(c.in)
			if !errors.Is(err, c.want) || more || n != 0 || h != (Header{}) {
				t.Fatalf("Parse = %+v, %d, %v, %v; want %v", h, n, more, err, c.want)
			}
		})
	}
}

// TestParseLyingLengthWaits: a version 2 length larger than what came
// (within the bound) needs more bytes: the caller's timeout ends it, and
// it never asks for more than MaxV2Header.
func TestParseLyingLengthWaits(t *testing.T) {
	in := v2(Proxy, 0x11, MaxV2Payload, inet4("1.2.3.4", "5.6.7.8", 1, 2))
	if _, _, more, err := Parse(in); !more || err != nil {
		t.Fatalf("needMore %v err %v, want needMore", more, err)
	}
	in = append(in, tlv(0xEE, make([]byte, MaxV2Payload-12-3))...)
	if _, n, more, err := Parse(in); more || err != nil || n != MaxV2Header {
		t.Fatalf("n %d needMore %v err %v, want the whole %d-byte header", n, more, err, MaxV2Header)
	}
}

// TestParseAllocs: the version 2 happy path allocates nothing.
func TestParseAllocs(t *testing.T) {
	in := v2(Proxy, 0x21, -1, inet6("2001:db8::7", "2001:db8::1", 443, 7400), tlv(0x05, []byte("id")))
	if n := testing.AllocsPerRun(100, func() { _, _, _, _ = Parse(in) }); n != 0 {
		t.Fatalf("%v allocations per v2 parse, want 0", n)
	}
}

// FuzzParse: no input panics; a header found lies within the input, is
// found again in its own bytes, and every prefix of it needs more.
func FuzzParse(f *testing.F) {
	for _, c := range valid {
		f.Add(c.in)
	}
	f.Add([]byte("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n"))
	f.Add(v2(Proxy, 0x11, 40, inet4("1.2.3.4", "5.6.7.8", 1, 2)))
	f.Add(v2(Proxy, 0x21, -1, inet6("::1", "::1", 1, 2), []byte{1, 0, 200}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, more, err := Parse(b)
		switch {
		case err != nil:
			if more || n != 0 {
				t.Fatalf("error %v with n %d needMore %v", err, n, more)
			}
			return
		case more:
			if n != 0 || len(b) >= MaxV2Header {
				t.Fatalf("needMore with n %d after %d bytes", n, len(b))
			}
			return
		}
		if n <= 0 || n > len(b) || n > MaxV2Header {
			t.Fatalf("header of %d bytes in %d", n, len(b))
		}
		h2, n2, more2, err2 := Parse(b[:n])
		if h2 != h || n2 != n || more2 || err2 != nil {
			t.Fatalf("own bytes parse as %+v %d %v %v, not %+v %d", h2, n2, more2, err2, h, n)
		}
		for i := range n {
			if _, _, more, err := Parse(b[:i]); !more || err != nil {
				t.Fatalf("prefix %d of %d: needMore %v err %v", i, n, more, err)
			}
		}
	})
}

// BenchmarkParseV2 is the cost the gateway pays once per connection
// behind a load balancer: an IPv4 header with one TLV, as HAProxy sends.
func BenchmarkParseV2(b *testing.B) {
	in := v2(Proxy, 0x11, -1, inet4("192.0.2.7", "198.51.100.1", 56324, 7400), tlv(0x04, make([]byte, 4)))
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, _, _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseV1 is the text header's cost, for comparison.
func BenchmarkParseV1(b *testing.B) {
	in := []byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 7400\r\n")
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, _, _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}
