package protocol

import (
	"encoding/binary"
	"errors"
)

// MaxMsgpackDepth is how deep containers may nest in a map payload that
// comes off the wire (HELLO, WELCOME, GOAWAY, ERROR, link extensions). The
// contract's maps are one or two levels deep.
const MaxMsgpackDepth = 16

var (
	errMsgpackTruncated = errors.New("msgpack: value runs past the payload")
	errMsgpackDepth     = errors.New("msgpack: nested too deep")
	errMsgpackCode      = errors.New("msgpack: reserved code 0xc1")
)

// msgpackLen returns the length of the one MessagePack value at the start
// of p, walking it without allocating and with at most maxDepth levels of
// nesting.
//
// Why it exists: vmihailenco/msgpack sizes what it allocates from the
// lengths the input declares. DecodeInterface makes a slice of a declared
// 2^31 elements before reading one; a str32 or bin32 header claiming 3 GB
// allocates a megabyte before it finds the bytes missing, and the pooled
// decoder behind msgpack.Unmarshal keeps that buffer and grows it by
// another megabyte on every such input until the process runs out of
// memory (the fuzz targets found both). Once msgpackLen has accepted p,
// every declared length is bounded by bytes that are really there, and the
// library can be handed p safely.
func msgpackLen(p []byte, maxDepth int) (int, error) {
	return skipValue(p, 0, maxDepth)
}

// skipValue returns the offset just past the value starting at p[i].
func skipValue(p []byte, i, depth int) (int, error) {
	if i >= len(p) {
		return 0, errMsgpackTruncated
	}
	c := p[i]
	i++
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3: // fixint, nil, bool
		return i, nil
	case c <= 0x8f: // fixmap
		return skipElems(p, i, 2*int(c&0x0f), depth)
	case c <= 0x9f: // fixarray
		return skipElems(p, i, int(c&0x0f), depth)
	case c <= 0xbf: // fixstr
		return skipBytes(p, i, int(c&0x1f))
	}
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		return skipSized(p, i, 1, 0)
	case 0xc5, 0xda: // bin16, str16
		return skipSized(p, i, 2, 0)
	case 0xc6, 0xdb: // bin32, str32
		return skipSized(p, i, 4, 0)
	case 0xc7: // ext8: length, type, data
		return skipSized(p, i, 1, 1)
	case 0xc8: // ext16
		return skipSized(p, i, 2, 1)
	case 0xc9: // ext32
		return skipSized(p, i, 4, 1)
	case 0xcc, 0xd0: // uint8, int8
		return skipBytes(p, i, 1)
	case 0xcd, 0xd1: // uint16, int16
		return skipBytes(p, i, 2)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return skipBytes(p, i, 4)
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		return skipBytes(p, i, 8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16: type, data
		return skipBytes(p, i, 1+1<<(c-0xd4))
	case 0xdc: // array16
		n, i, err := readLen(p, i, 2)
		if err != nil {
			return 0, err
		}
		return skipElems(p, i, n, depth)
	case 0xdd: // array32
		n, i, err := readLen(p, i, 4)
		if err != nil {
			return 0, err
		}
		return skipElems(p, i, n, depth)
	case 0xde: // map16
		n, i, err := readLen(p, i, 2)
		if err != nil {
			return 0, err
		}
		return skipElems(p, i, 2*n, depth)
	case 0xdf: // map32
		n, i, err := readLen(p, i, 4)
		if err != nil {
			return 0, err
		}
		return skipElems(p, i, 2*n, depth)
	}
	return 0, errMsgpackCode // 0xc1, never used
}

// skipElems skips n values one level down.
func skipElems(p []byte, i, n, depth int) (int, error) {
	if depth <= 0 {
		return 0, errMsgpackDepth
	}
	if n > len(p)-i { // every value takes at least one byte
		return 0, errMsgpackTruncated
	}
	var err error
	for range n {
		if i, err = skipValue(p, i, depth-1); err != nil {
			return 0, err
		}
	}
	return i, nil
}

// skipSized skips a length of size bytes, extra bytes (an ext's type), and
// the data the length declares.
func skipSized(p []byte, i, size, extra int) (int, error) {
	n, i, err := readLen(p, i, size)
	if err != nil {
		return 0, err
	}
	return skipBytes(p, i, extra+n)
}

// readLen reads a big-endian length of size 1, 2 or 4 bytes.
func readLen(p []byte, i, size int) (n, next int, err error) {
	if size > len(p)-i {
		return 0, 0, errMsgpackTruncated
	}
	switch size {
	case 1:
		n = int(p[i])
	case 2:
		n = int(binary.BigEndian.Uint16(p[i:]))
	default:
		n = int(binary.BigEndian.Uint32(p[i:]))
	}
	return n, i + size, nil
}

func skipBytes(p []byte, i, n int) (int, error) {
	if n > len(p)-i {
		return 0, errMsgpackTruncated
	}
	return i + n, nil
}
