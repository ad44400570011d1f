package protocol

import "encoding/binary"

// Decode decodes the first frame of b. It returns the frame, the number of
// bytes it used, and an error: ErrIncomplete when b holds less than a whole
// frame (read more), or a *Error when the frame is malformed. The length
// field is checked as soon as its 4 bytes are present, so an oversize frame
// is refused before its body arrives. The payload aliases b.
func Decode(b []byte, maxPayload int) (Frame, int, error) {
	if len(b) < LengthSize {
		return Frame{}, 0, ErrIncomplete
	}
	length := binary.BigEndian.Uint32(b)
	if err := CheckLength(length, maxPayload); err != nil {
		return Frame{}, 0, err
	}
	total := LengthSize + int(length)
	if len(b) < total {
		return Frame{}, 0, ErrIncomplete
	}
	h := ParseHeader(b)
	if err := h.Validate(); err != nil {
		return Frame{}, 0, err
	}
	return Frame{Type: h.Type, Flags: h.Flags, Seq: h.Seq, Payload: b[HeaderSize:total:total]}, total, nil
}

// Reader is the part of a netpoll Reader the stream decoder uses; a
// netpoll.Reader (and so a netpoll.Connection's Reader) satisfies it. Next
// and Peek return views into the reader's buffer without copying when the
// bytes lie in one buffer node.
type Reader interface {
	Len() int
	Peek(n int) ([]byte, error)
	Next(n int) ([]byte, error)
}

// ReadFrame reads one frame from r. On a netpoll connection Peek and Next
// block until enough bytes arrived; the caller only calls ReadFrame when it
// is willing to wait for the rest of a frame. The length is validated after
// peeking the first 4 bytes and before the body is read. On a protocol error
// nothing is consumed. The payload aliases r's buffer until r is released.
func ReadFrame(r Reader, maxPayload int) (Frame, error) {
	var hdr []byte
	var err error
	if r.Len() >= HeaderSize {
		hdr, err = r.Peek(HeaderSize)
	} else {
		if hdr, err = r.Peek(LengthSize); err != nil {
			return Frame{}, err
		}
		if err = CheckLength(binary.BigEndian.Uint32(hdr), maxPayload); err != nil {
			return Frame{}, err
		}
		hdr, err = r.Peek(HeaderSize)
	}
	if err != nil {
		return Frame{}, err
	}
	h := ParseHeader(hdr)
	if err := CheckLength(h.Length, maxPayload); err != nil {
		return Frame{}, err
	}
	if err := h.Validate(); err != nil {
		return Frame{}, err
	}
	buf, err := r.Next(LengthSize + int(h.Length))
	if err != nil {
		return Frame{}, err
	}
	return Frame{Type: h.Type, Flags: h.Flags, Seq: h.Seq, Payload: buf[HeaderSize:len(buf):len(buf)]}, nil
}
