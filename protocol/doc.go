// Package protocol is the Switchyard device protocol, version 1: frame
// layout, limits, error codes, the zero-copy frame decoder, the frame encoder
// and the MessagePack maps carried by HELLO, WELCOME, GOAWAY and ERROR.
//
// It sits at the bottom of the import graph (stdlib and msgpack only) and
// owns no goroutines.
//
// A frame on the wire:
//
//	offset  size  field
//	0       4     length   uint32, big-endian: 6 + payload size
//	4       1     type
//	5       1     flags    bit 0 = ACK_REQUESTED, the rest reserved (0)
//	6       4     seq      uint32, big-endian
//	10      n     payload  n = length - 6
//
// Invariants the decoder keeps:
//
//   - the length field is checked before any byte of the body is read, so an
//     oversize frame is refused (413) without being buffered;
//   - a decoded Frame's Payload aliases the input (no copy); it is valid only
//     until the caller releases the input buffer;
//   - decoding allocates nothing on the DATA path.
package protocol
