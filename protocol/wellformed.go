package protocol

import (
	"encoding/binary"
	"errors"
)

// MaxMsgpackDepth is how deep containers may nest in a map payload that
// Unmarshal decodes (WELCOME, GOAWAY, ERROR, link extensions): msgpack
// decodes and skips nested values by recursion, one stack frame a level.
// A HELLO is walked and its unknown keys skipped here, without recursion,
// so it may nest as deep as its bytes allow: the contract ignores unknown
// keys whatever they hold.
const MaxMsgpackDepth = 16

// anyDepth is msgpackLen's maxDepth for no limit on nesting.
const anyDepth = -1

var (
	errMsgpackTruncated = errors.New("msgpack: value runs past the payload")
	errMsgpackDepth     = errors.New("msgpack: nested too deep")
	errMsgpackCode      = errors.New("msgpack: reserved code 0xc1")
)

// msgpackLen returns the length of the one MessagePack value at the start
// of p, walking it without allocating and without recursion; containers
// nested more than maxDepth (at most MaxMsgpackDepth) levels deep are
// refused, at any depth with anyDepth.
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
	// left counts the values still to come; with a depth limit, open[d]
	// counts those of the container open at depth d (d = 0: the value
	// itself), so that the walk knows when it climbs out of one.
	var open [MaxMsgpackDepth + 1]int
	open[0] = 1
	maxDepth = min(maxDepth, MaxMsgpackDepth)
	left, depth, i := 1, 0, 0
	for left > 0 {
		elems, next, err := msgpackHeader(p, i)
		if err != nil {
			return 0, err
		}
		if elems > len(p)-next { // every value takes at least one byte
			return 0, errMsgpackTruncated
		}
		i, left = next, left-1+elems
		if maxDepth == anyDepth {
			continue
		}
		open[depth]--
		if elems > 0 {
			if depth == maxDepth {
				return 0, errMsgpackDepth
			}
			depth++
			open[depth] = elems
		}
		for depth > 0 && open[depth] == 0 {
			depth--
		}
	}
	return i, nil
}

// msgpackHeader reads the value that starts at p[i]: how many values its
// container holds (map: keys and values; 0 for any other value), and the
// offset just past its header and its own bytes.
func msgpackHeader(p []byte, i int) (elems, next int, err error) {
	if i >= len(p) {
		return 0, 0, errMsgpackTruncated
	}
	c := p[i]
	i++
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3: // fixint, nil, bool
		return 0, i, nil
	case c <= 0x8f: // fixmap
		return 2 * int(c&0x0f), i, nil
	case c <= 0x9f: // fixarray
		return int(c & 0x0f), i, nil
	case c <= 0xbf: // fixstr
		next, err = skipBytes(p, i, int(c&0x1f))
		return 0, next, err
	}
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		next, err = skipSized(p, i, 1, 0)
	case 0xc5, 0xda: // bin16, str16
		next, err = skipSized(p, i, 2, 0)
	case 0xc6, 0xdb: // bin32, str32
		next, err = skipSized(p, i, 4, 0)
	case 0xc7: // ext8: length, type, data
		next, err = skipSized(p, i, 1, 1)
	case 0xc8: // ext16
		next, err = skipSized(p, i, 2, 1)
	case 0xc9: // ext32
		next, err = skipSized(p, i, 4, 1)
	case 0xcc, 0xd0: // uint8, int8
		next, err = skipBytes(p, i, 1)
	case 0xcd, 0xd1: // uint16, int16
		next, err = skipBytes(p, i, 2)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		next, err = skipBytes(p, i, 4)
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		next, err = skipBytes(p, i, 8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16: type, data
		next, err = skipBytes(p, i, 1+1<<(c-0xd4))
	case 0xdc: // array16
		return readLen(p, i, 2)
	case 0xdd: // array32
		return readLen(p, i, 4)
	case 0xde: // map16
		elems, next, err = readLen(p, i, 2)
		return 2 * elems, next, err
	case 0xdf: // map32
		elems, next, err = readLen(p, i, 4)
		return 2 * elems, next, err
	default: // 0xc1, never used
		return 0, 0, errMsgpackCode
	}
	return 0, next, err
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
