package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Header sizes. A peer can make the caller hold at most MaxV2Header bytes
// before Parse decides.
const (
	// MaxV1Header is the longest version 1 header, CRLF included (the
	// specification's own bound: "PROXY UNKNOWN" with two full IPv6
	// addresses and ports).
	MaxV1Header = 107
	// V2Fixed is the fixed part of a version 2 header: the signature,
	// version and command, family and transport, and the length.
	V2Fixed = 16
	// MaxV2Payload bounds the length field of a version 2 header (the
	// addresses and the TLVs after them). The format allows 65,535 bytes;
	// load balancers send the addresses and a few short TLVs (HAProxy's
	// SSL information, AWS's VPC endpoint id, a unique id of at most 128
	// bytes), well under this.
	MaxV2Payload = 2048
	// MaxV2Header is the longest version 2 header accepted.
	MaxV2Header = V2Fixed + MaxV2Payload
)

// Command says what a header asks of the receiver.
type Command uint8

const (
	// Local: the connection is the proxy's own (a health check); the
	// receiver uses the socket's addresses. Only version 2 has it.
	Local Command = 0
	// Proxy: the connection is relayed for the client in Source.
	Proxy Command = 1
)

// Header is a parsed PROXY header.
type Header struct {
	// Version is 1 (text) or 2 (binary).
	Version int
	// Command is Local or Proxy (always Proxy for version 1).
	Command Command
	// Source and Dest are the client's address and the address it
	// connected to, as the proxy saw them. They are the zero AddrPort
	// when the header carries none: the LOCAL command, version 1's
	// UNKNOWN, version 2's UNSPEC or UNIX family.
	Source, Dest netip.AddrPort
}

// Local reports whether the header carries no client address, so that
// the receiver is to use the socket's own.
func (h *Header) Local() bool { return !h.Source.IsValid() }

// Errors. Every error Parse returns wraps one of them.
var (
	// ErrNotProxy: the bytes do not begin with either version's signature.
	ErrNotProxy = errors.New("proxyproto: not a PROXY protocol header")
	// ErrMalformed: the bytes begin like a header but break its format.
	ErrMalformed = errors.New("proxyproto: malformed header")
)

// Parse parses the header at the start of b, the bytes buffered so far.
// It returns the header and its length n (the connection's own bytes
// start at b[n]); or needMore when b is a proper prefix of a header that
// may still be valid (call again with more bytes); or an error when b
// cannot start a header. It never needs more than MaxV1Header or
// MaxV2Header bytes to decide.
func Parse(b []byte) (h Header, n int, needMore bool, err error) {
	if len(b) == 0 {
		return h, 0, true, nil
	}
	switch b[0] {
	case v1Prefix[0]:
		return parseV1(b)
	case sigV2[0]:
		return parseV2(b)
	}
	return h, 0, false, ErrNotProxy
}

// sigV2 is the version 2 signature, which cannot start a version 1 header
// nor an HTTP request.
var sigV2 = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// Version 2 address families, the high nibble of the 14th byte.
const (
	afUnspec = 0
	afInet   = 1
	afInet6  = 2
	afUnix   = 3
)

// addrLen is the size of each family's address block.
var addrLen = [4]int{afUnspec: 0, afInet: 12, afInet6: 36, afUnix: 216}

func parseV2(b []byte) (h Header, n int, needMore bool, err error) {
	k := min(len(b), len(sigV2))
	if !bytes.Equal(b[:k], sigV2[:k]) {
		return h, 0, false, ErrNotProxy
	}
	if len(b) < 13 {
		return h, 0, true, nil
	}
	if v := b[12] >> 4; v != 2 {
		return h, 0, false, fmt.Errorf("%w: version %d", ErrMalformed, v)
	}
	cmd := Command(b[12] & 0x0F)
	if cmd > Proxy {
		return h, 0, false, fmt.Errorf("%w: command %d", ErrMalformed, cmd)
	}
	if len(b) < 14 {
		return h, 0, true, nil
	}
	af, tr := b[13]>>4, b[13]&0x0F
	if af > afUnix || tr > 2 {
		return h, 0, false, fmt.Errorf("%w: family %#02x", ErrMalformed, b[13])
	}
	if len(b) < V2Fixed {
		return h, 0, true, nil
	}
	l := int(binary.BigEndian.Uint16(b[14:V2Fixed]))
	if l > MaxV2Payload {
		return h, 0, false, fmt.Errorf("%w: length %d over %d", ErrMalformed, l, MaxV2Payload)
	}
	// LOCAL's block is to be discarded whatever it holds (the
	// specification); PROXY's must hold its family's addresses.
	need := addrLen[af]
	if cmd == Proxy && l < need {
		return h, 0, false, fmt.Errorf("%w: length %d short of the %d address bytes", ErrMalformed, l, need)
	}
	if len(b) < V2Fixed+l {
		return h, 0, true, nil
	}
	h = Header{Version: 2, Command: cmd}
	if cmd == Local {
		return h, V2Fixed + l, false, nil
	}
	body := b[V2Fixed : V2Fixed+l]
	switch af {
	case afInet:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	case afInet6:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	}
	if err := checkTLVs(body[need:]); err != nil {
		return Header{}, 0, false, err
	}
	return h, V2Fixed + l, false, nil
}

// checkTLVs checks that the TLVs after the addresses tile the rest of the
// header exactly: a type byte, a 16-bit length, that many bytes. Their
// contents are not used. At most MaxV2Payload/3 steps.
func checkTLVs(t []byte) error {
	for len(t) > 0 {
		if len(t) < 3 {
			return fmt.Errorf("%w: %d bytes left, short of a TLV", ErrMalformed, len(t))
		}
		vl := int(binary.BigEndian.Uint16(t[1:3]))
		if 3+vl > len(t) {
			return fmt.Errorf("%w: TLV %#02x of %d bytes overruns the header by %d", ErrMalformed, t[0], vl, 3+vl-len(t))
		}
		t = t[3+vl:]
	}
	return nil
}
