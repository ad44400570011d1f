package proxyproto

import (
	"bytes"
	"fmt"
	"net/netip"
)

// v1Prefix starts every version 1 header.
const v1Prefix = "PROXY "

// parseV1 parses "PROXY TCP4|TCP6 src dst sport dport\r\n" or
// "PROXY UNKNOWN[ anything]\r\n", single spaces, at most MaxV1Header
// bytes.
func parseV1(b []byte) (h Header, n int, needMore bool, err error) {
	k := min(len(b), len(v1Prefix))
	if string(b[:k]) != v1Prefix[:k] {
		return h, 0, false, ErrNotProxy
	}
	w := b[:min(len(b), MaxV1Header)]
	lf := bytes.IndexByte(w, '\n')
	cr := bytes.IndexByte(w, '\r')
	switch {
	case lf < 0 && cr >= 0 && cr < len(w)-1:
		return h, 0, false, fmt.Errorf("%w: CR inside the line", ErrMalformed)
	case lf < 0 && len(w) == MaxV1Header:
		return h, 0, false, fmt.Errorf("%w: no CRLF within %d bytes", ErrMalformed, MaxV1Header)
	case lf < 0:
		return h, 0, true, nil
	case cr != lf-1:
		return h, 0, false, fmt.Errorf("%w: line not ended by CRLF", ErrMalformed)
	}
	h, err = parseV1Line(w[len(v1Prefix):cr])
	if err != nil {
		return Header{}, 0, false, err
	}
	return h, lf + 1, false, nil
}

// parseV1Line parses the line after "PROXY " and before CRLF.
func parseV1Line(line []byte) (Header, error) {
	h := Header{Version: 1, Command: Proxy}
	proto, rest, _ := bytes.Cut(line, []byte{' '})
	switch string(proto) {
	case "UNKNOWN":
		// The rest is to be ignored (the specification): the
		// receiver uses the socket's addresses.
		return h, nil
	case "TCP4", "TCP6":
	default:
		return h, fmt.Errorf("%w: protocol %q", ErrMalformed, proto)
	}
	var f [4][]byte
	for i := range f {
		var ok bool
		f[i], rest, ok = bytes.Cut(rest, []byte{' '})
		if ok == (i == len(f)-1) {
			return h, fmt.Errorf("%w: want 4 fields after %s", ErrMalformed, proto)
		}
	}
	src, err1 := parseV1Addr(f[0], proto[3] == '4')
	dst, err2 := parseV1Addr(f[1], proto[3] == '4')
	sport, err3 := parsePort(f[2])
	dport, err4 := parsePort(f[3])
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return h, err
		}
	}
	h.Source, h.Dest = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return h, nil
}

// parseV1Addr parses an address of the family the protocol names (no
// zone: the specification has none).
func parseV1Addr(s []byte, four bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(string(s))
	if err != nil || a.Is4() != four || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: address %q", ErrMalformed, s)
	}
	return a, nil
}

// parsePort parses a decimal port, 0..65535, without leading zeros.
func parsePort(s []byte) (uint16, error) {
	if len(s) == 0 || len(s) > 5 || len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%w: port %q", ErrMalformed, s)
	}
	var p int
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: port %q", ErrMalformed, s)
		}
		p = p*10 + int(c-'0')
	}
	if p > 65535 {
		return 0, fmt.Errorf("%w: port %q", ErrMalformed, s)
	}
	return uint16(p), nil
}
