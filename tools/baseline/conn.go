package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// server holds what every connection shares; it is read-only after start.
type server struct {
	maxFrame int
	hb       time.Duration
	secrets  [][]byte // nil: no auth
	sessions atomic.Uint64
}

// conn is one device connection, owned by its goroutine.
type conn struct {
	srv      *server
	nc       net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	body     []byte // reused for payloads larger than the read buffer
	lastUp   uint32 // highest reliable upstream seq accepted
	downSeq  uint32 // last reliable downstream seq sent
	hdr      [protocol.HeaderSize]byte
	deadline time.Duration // current read timeout
}

var errPeerClosed = errors.New("baseline: peer closed")

func (s *server) serve(nc net.Conn) {
	defer nc.Close()
	c := &conn{srv: s, nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriter(nc), deadline: defaultHandshakeTimeout}
	err := c.handshake()
	for err == nil {
		err = c.step()
	}
	c.fail(err)
}

// fail sends the ERROR a protocol error calls for; I/O errors close silently.
func (c *conn) fail(err error) {
	var pe *protocol.Error
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		c.w.Write(protocol.AppendError(nil, pe.Code, pe.Msg))
	case errors.As(err, &ne) && ne.Timeout():
		c.w.Write(protocol.AppendError(nil, protocol.CodeTimeout, "timeout"))
	default:
		return
	}
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.w.Flush()
}

// readFrame reads one frame. The length is checked before the body is read;
// the payload aliases the read buffer or c.body until the next read.
func (c *conn) readFrame() (protocol.Frame, error) {
	if c.r.Buffered() == 0 {
		if err := c.w.Flush(); err != nil {
			return protocol.Frame{}, err
		}
		c.nc.SetReadDeadline(time.Now().Add(c.deadline))
	}
	b, err := c.r.Peek(protocol.LengthSize)
	if err != nil {
		return protocol.Frame{}, ioErr(err)
	}
	if err := protocol.CheckLength(binary.BigEndian.Uint32(b), c.srv.maxFrame); err != nil {
		return protocol.Frame{}, err
	}
	if _, err := io.ReadFull(c.r, c.hdr[:]); err != nil {
		return protocol.Frame{}, ioErr(err)
	}
	h := protocol.ParseHeader(c.hdr[:])
	if err := h.Validate(); err != nil {
		return protocol.Frame{}, err
	}
	n := h.PayloadLen()
	if cap(c.body) < n {
		c.body = make([]byte, n)
	}
	c.body = c.body[:n]
	if _, err := io.ReadFull(c.r, c.body); err != nil {
		return protocol.Frame{}, ioErr(err)
	}
	return protocol.Frame{Type: h.Type, Flags: h.Flags, Seq: h.Seq, Payload: c.body}, nil
}

func ioErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errPeerClosed
	}
	return err
}

func (c *conn) handshake() error {
	f, err := c.readFrame()
	if err != nil {
		return err
	}
	if f.Type != protocol.TypeHello {
		return protocol.BadRequest("first frame must be HELLO")
	}
	h, err := protocol.DecodeHello(f.Payload)
	if err != nil {
		return err
	}
	if c.srv.secrets != nil {
		if err := protocol.VerifyToken(c.srv.secrets, h.ID, h.Token, time.Now()); err != nil {
			return err
		}
	}
	n := c.srv.sessions.Add(1)
	p, err := protocol.Marshal(&protocol.Welcome{
		Session:  nodeName + "-" + strconv.FormatUint(n, 10),
		Resume:   binary.BigEndian.AppendUint64(nil, n),
		HB:       int(c.srv.hb / time.Second),
		MaxFrame: c.srv.maxFrame,
		Node:     nodeName,
	})
	if err != nil {
		return &protocol.Error{Code: protocol.CodeInternal, Msg: "welcome"}
	}
	c.writeFrame(protocol.TypeWelcome, 0, 0, p)
	c.deadline = idleFactor * c.srv.hb
	return nil
}

// step reads and answers one frame after the handshake.
func (c *conn) step() error {
	f, err := c.readFrame()
	if err != nil {
		return err
	}
	switch f.Type {
	case protocol.TypeData:
		c.data(&f)
	case protocol.TypePing:
		if len(f.Payload) > protocol.MaxPingPayload {
			return protocol.ErrBadPayload
		}
		c.writeFrame(protocol.TypePong, 0, 0, f.Payload)
	case protocol.TypePong, protocol.TypeAck:
		// liveness only; downstream ACKs need no bookkeeping in an echo
	case protocol.TypeHello:
		return protocol.BadRequest("second HELLO")
	default:
		return protocol.BadRequest("unexpected frame type " + f.Type.String())
	}
	return nil
}

// data is the embedded echo backend.
func (c *conn) data(f *protocol.Frame) {
	if !f.Reliable() {
		c.writeFrame(protocol.TypeData, 0, 0, f.Payload)
		return
	}
	if f.Seq <= c.lastUp { // duplicate: acknowledge again, deliver nothing
		c.writeFrame(protocol.TypeAck, 0, c.lastUp, nil)
		return
	}
	c.lastUp = f.Seq
	c.writeFrame(protocol.TypeAck, 0, f.Seq, nil)
	c.downSeq++
	c.writeFrame(protocol.TypeData, protocol.FlagAckRequested, c.downSeq, f.Payload)
}

// writeFrame buffers one frame; readFrame flushes when the input is drained.
func (c *conn) writeFrame(t protocol.Type, fl protocol.Flags, seq uint32, payload []byte) {
	var hdr [protocol.HeaderSize]byte
	binary.BigEndian.PutUint32(hdr[0:], uint32(len(payload)+protocol.HeaderSize-protocol.LengthSize))
	hdr[4], hdr[5] = byte(t), byte(fl)
	binary.BigEndian.PutUint32(hdr[6:], seq)
	c.w.Write(hdr[:])
	c.w.Write(payload)
}
