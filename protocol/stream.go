package protocol

import (
	"encoding/binary"
	"errors"
	"io"
)

// StreamReader splits a byte stream into length-prefixed frames: the one
// reader of blocking connections, for gateway↔shard links (both sides)
// and for device frames in the Go client. (The gateway's device side
// reads netpoll buffers with ReadFrame instead.)
//
//	| length u32 | body (length bytes) |   device frame or link envelope
//
// The length field is checked against the limit as soon as its 4 bytes
// are in, before any byte of the body is read or room is made for it, so a
// peer can make the reader hold at most one frame of the limit. The buffer
// grows to hold the frame at its head and is given back after a frame
// larger than keepStreamBuffer. Once it holds a frame, reading allocates
// nothing: what Next returns aliases the buffer until the following call.
//
// Errors: a length over the limit (ErrLinkTooLarge, or the device frame
// errors of CheckLength) and every error of the underlying reader end the
// stream and stick. A link envelope that does not decode (ErrLinkMalformed,
// ErrLinkVersion) costs only its own frame: NextEnvelope may be called
// again. A StreamReader is used by one goroutine.
type StreamReader struct {
	r          io.Reader
	buf        []byte
	start, end int   // buf[start:end] is read but not yet returned
	link       bool  // link frames (else device frames)
	limit      int   // largest length field (link) or payload (device) accepted
	readSize   int   // smallest buffer a read is made into
	err        error // sticky: the stream cannot go on
}

// Buffer sizes of a StreamReader.
const (
	linkReadSize     = 64 << 10 // links carry batches: read them in large pieces
	frameReadSize    = 4 << 10  // a device client holds one per connection
	keepStreamBuffer = 1 << 20  // larger buffers are dropped once empty
)

// LinkAuthMaxFrame bounds a link frame before the link is authenticated
// (SetLimit): the three authentication envelopes are far smaller, and an
// unauthenticated peer must not make the other side hold MaxLinkFrame.
const LinkAuthMaxFrame = 4 << 10

// NewLinkReader reads link frames from r, each at most MaxLinkFrame.
func NewLinkReader(r io.Reader) *StreamReader {
	return &StreamReader{r: r, link: true, limit: MaxLinkFrame, readSize: linkReadSize}
}

// NewFrameReader reads device frames from r, each with a payload of at
// most maxPayload bytes.
func NewFrameReader(r io.Reader, maxPayload int) *StreamReader {
	return &StreamReader{r: r, limit: maxPayload, readSize: frameReadSize}
}

// SetLimit changes the largest frame accepted from the next one on: the
// length field for links (at most MaxLinkFrame), the payload for device
// frames.
func (s *StreamReader) SetLimit(n int) {
	if s.link {
		n = min(n, MaxLinkFrame)
	}
	s.limit = n
}

// Next returns the next whole frame, length field included.
func (s *StreamReader) Next() ([]byte, error) {
	for {
		if n, err := s.whole(); err != nil || n > 0 {
			if err != nil {
				s.err = err
				return nil, err
			}
			b := s.buf[s.start : s.start+n : s.start+n]
			s.start += n
			return b, nil
		}
		if err := s.fill(); err != nil {
			return nil, err
		}
	}
}

// Buffered reports whether a whole frame is buffered, so that the next
// call returns without reading: a reader that batches work per read (one
// flush per batch) ends its batch when this is false.
func (s *StreamReader) Buffered() bool {
	n, err := s.whole()
	return n > 0 || err != nil
}

// whole checks the frame at the head of the buffer: its size when it is
// all there, 0 when more bytes are needed, or the error of an invalid
// length field (or the sticky error).
func (s *StreamReader) whole() (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.end-s.start < LengthSize {
		return 0, nil
	}
	n := binary.BigEndian.Uint32(s.buf[s.start:])
	if err := s.checkLength(n); err != nil {
		return 0, err
	}
	if total := LengthSize + int(n); s.end-s.start >= total {
		return total, nil
	}
	return 0, nil
}

// checkLength is the one bounds check of a length field.
func (s *StreamReader) checkLength(n uint32) error {
	if !s.link {
		return CheckLength(n, s.limit)
	}
	if uint64(n) > uint64(s.limit) {
		return ErrLinkTooLarge
	}
	return nil
}

// fill reads at least one byte, first making room for the whole frame at
// the head (its length is valid: whole checked it).
func (s *StreamReader) fill() error {
	if s.start == s.end {
		s.start, s.end = 0, 0
		if cap(s.buf) > keepStreamBuffer {
			s.buf = nil
		}
	}
	need := s.readSize
	if s.end-s.start >= LengthSize {
		need = max(need, LengthSize+int(binary.BigEndian.Uint32(s.buf[s.start:])))
	}
	if len(s.buf)-s.start < need {
		nb := s.buf
		if len(nb) < need {
			nb = make([]byte, need)
		}
		s.end = copy(nb, s.buf[s.start:s.end])
		s.start, s.buf = 0, nb
	}
	n, err := s.r.Read(s.buf[s.end:])
	s.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	s.err = err
	return err
}

// NextEnvelope returns the next link envelope; it aliases the buffer until
// the following call. ErrLinkMalformed and ErrLinkVersion skip that one
// frame; any other error ends the stream.
func (s *StreamReader) NextEnvelope() (Envelope, error) {
	b, err := s.Next()
	if err != nil {
		return Envelope{}, err
	}
	return DecodeEnvelope(b[LengthSize:])
}

// NextFrame returns the next device frame; its payload aliases the buffer
// until the following call. Frames of unknown types are skipped (a newer
// peer may send extensions); any other invalid frame ends the stream.
func (s *StreamReader) NextFrame() (Frame, error) {
	for {
		b, err := s.Next()
		if err != nil {
			return Frame{}, err
		}
		f, _, err := Decode(b, s.limit)
		if errors.Is(err, ErrUnknownType) {
			continue
		}
		if err != nil {
			s.err = err
		}
		return f, err
	}
}
