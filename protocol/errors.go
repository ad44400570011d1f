package protocol

import (
	"errors"
	"fmt"
)

// Error codes carried by ERROR frames (PROTOCOL.md, "Errors").
const (
	CodeBadRequest   = 400 // malformed frame, bad handshake, unknown type, reserved flag set
	CodeUnauthorized = 401 // authentication failed
	CodeTimeout      = 408 // handshake or idle timeout
	CodeConflict     = 409 // session taken over by a newer connection
	CodeTooLarge     = 413 // frame too large
	CodeRateLimited  = 429 // rate limit exceeded; the frame was dropped
	CodeInternal     = 500 // internal error
	CodeUnavailable  = 503 // no backend, overloaded or draining
)

// Error is a protocol violation or refusal with the code the peer is told.
type Error struct {
	Code int    // one of the Code constants
	Msg  string // short human-readable reason, sent in the ERROR frame
}

func (e *Error) Error() string { return fmt.Sprintf("protocol: %d %s", e.Code, e.Msg) }

// Sentinel errors of the frame decoder. Compare with errors.Is.
var (
	// ErrShortLength: the length field is below 6.
	ErrShortLength = &Error{CodeBadRequest, "length below 6"}
	// ErrFrameTooLarge: the payload exceeds the configured maximum.
	ErrFrameTooLarge = &Error{CodeTooLarge, "frame too large"}
	// ErrUnknownType: the type byte is not a known frame type.
	ErrUnknownType = &Error{CodeBadRequest, "unknown frame type"}
	// ErrReservedFlags: a reserved flag bit is set.
	ErrReservedFlags = &Error{CodeBadRequest, "reserved flag set"}
	// ErrBadPayload: a payload breaks the rule of its frame type.
	ErrBadPayload = &Error{CodeBadRequest, "bad payload for frame type"}
	// ErrHelloTooLarge: a well-formed HELLO whose payload exceeds 4096 bytes.
	ErrHelloTooLarge = &Error{CodeTooLarge, "hello too large"}
)

// ErrIncomplete is returned by Decode when the buffer holds less than one
// whole frame. It is not a protocol violation: read more and try again.
var ErrIncomplete = errors.New("protocol: incomplete frame")

// CodeOf returns the protocol error code carried by err, or CodeInternal
// when err is not a protocol error.
func CodeOf(err error) int {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return CodeInternal
}

// BadRequest returns a 400 error with msg.
func BadRequest(msg string) *Error { return &Error{CodeBadRequest, msg} }
