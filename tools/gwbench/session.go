package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// maxReply is the largest payload the driver accepts from a server.
const maxReply = protocol.DefaultMaxFrame

// auth makes HELLO tokens when the target enforces auth.
type auth struct {
	secret []byte // nil: no token
}

func (a auth) token(id string) string {
	if a.secret == nil {
		return ""
	}
	return protocol.MakeToken(a.secret, id, time.Now().Add(time.Hour))
}

// appendHello appends a HELLO frame for id (and token, if not empty) to dst.
// The map is encoded by hand so that a handshake costs the driver no
// reflection: {"v":1,"id":id[,"token":token]}.
func appendHello(dst []byte, id, token string) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(protocol.TypeHello), 0, 0, 0, 0, 0)
	n := byte(0x82)
	if token != "" {
		n = 0x83
	}
	dst = append(dst, n, 0xa1, 'v', 0x01, 0xa2, 'i', 'd')
	dst = appendStr(dst, id)
	if token != "" {
		dst = append(dst, 0xa5, 't', 'o', 'k', 'e', 'n')
		dst = appendStr(dst, token)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-protocol.LengthSize))
	return dst
}

// appendStr appends a msgpack str of at most 255 bytes.
func appendStr(dst []byte, s string) []byte {
	if len(s) < 32 {
		dst = append(dst, 0xa0|byte(len(s)))
	} else {
		dst = append(dst, 0xd9, byte(len(s)))
	}
	return append(dst, s...)
}

// serverError is an ERROR frame received from the target.
type serverError struct{ code int }

func (e *serverError) Error() string { return fmt.Sprintf("server ERROR %d", e.code) }

// readFrame reads exactly one frame from r into *buf (grown as needed).
// The payload aliases *buf.
func readFrame(r io.Reader, buf *[]byte) (protocol.Frame, error) {
	b := *buf
	if cap(b) < protocol.HeaderSize {
		b = make([]byte, 256)
	}
	b = b[:protocol.HeaderSize]
	if _, err := io.ReadFull(r, b); err != nil {
		return protocol.Frame{}, err
	}
	h := protocol.ParseHeader(b)
	if err := protocol.CheckLength(h.Length, maxReply); err != nil {
		return protocol.Frame{}, err
	}
	total := protocol.LengthSize + int(h.Length)
	if cap(b) < total {
		nb := make([]byte, total)
		copy(nb, b)
		b = nb
	}
	b = b[:total]
	if _, err := io.ReadFull(r, b[protocol.HeaderSize:]); err != nil {
		return protocol.Frame{}, err
	}
	*buf = b
	return protocol.Frame{Type: h.Type, Flags: h.Flags, Seq: h.Seq, Payload: b[protocol.HeaderSize:]}, nil
}

// errorCode decodes the code of an ERROR payload, 0 if unreadable.
func errorCode(p []byte) int {
	var m protocol.ErrorMsg
	if protocol.Unmarshal(p, &m) != nil {
		return 0
	}
	return m.Code
}

var errUnexpected = errors.New("gwbench: unexpected frame")

// expect reads frames until one of type t, skipping PING answers and ACKs.
func expect(rw io.ReadWriter, buf *[]byte, t protocol.Type) (protocol.Frame, error) {
	for {
		f, err := readFrame(rw, buf)
		if err != nil {
			return f, err
		}
		switch f.Type {
		case t:
			return f, nil
		case protocol.TypeError:
			return f, &serverError{errorCode(f.Payload)}
		case protocol.TypePing:
			pong := protocol.AppendFrame(nil, protocol.TypePong, 0, 0, f.Payload)
			if _, err := rw.Write(pong); err != nil {
				return f, err
			}
		case protocol.TypeAck, protocol.TypePong:
		default:
			return f, fmt.Errorf("%w: %s, want %s", errUnexpected, f.Type, t)
		}
	}
}

// handshake sends HELLO and waits for WELCOME.
func handshake(rw io.ReadWriter, buf *[]byte, id, token string) error {
	*buf = appendHello((*buf)[:0], id, token)
	if _, err := rw.Write(*buf); err != nil {
		return err
	}
	_, err := expect(rw, buf, protocol.TypeWelcome)
	return err
}

// echo sends one best-effort DATA and waits for its echo.
func echo(rw io.ReadWriter, buf *[]byte, payload []byte) error {
	*buf = protocol.AppendFrame((*buf)[:0], protocol.TypeData, 0, 0, payload)
	if _, err := rw.Write(*buf); err != nil {
		return err
	}
	f, err := expect(rw, buf, protocol.TypeData)
	if err != nil {
		return err
	}
	if !bytes.Equal(f.Payload, payload) {
		return fmt.Errorf("%w: echo differs", errUnexpected)
	}
	return nil
}
