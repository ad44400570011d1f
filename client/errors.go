package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Error is a refusal from the gateway: the code and message of an ERROR frame.
// errors.Is matches two *Error values by Code alone, so
// errors.Is(err, ErrTakenOver) works whatever the message.
type Error struct {
	Code    int    // protocol error code, e.g. 401, 409, 503
	Message string // the gateway's message
	// Retry is the gateway's retry hint (retry_ms, on a 503 from an
	// overloaded gateway): a reconnect waits a random time between half of
	// it and all of it, or its own backoff if that is longer. 0: no hint.
	Retry time.Duration
}

func (e *Error) Error() string {
	return fmt.Sprintf("gateway error %d: %s", e.Code, e.Message)
}

// Is reports whether target is an *Error with the same Code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Final reports whether the client gives up after this error instead of
// reconnecting: authentication failed (401), taken over (409), and the
// errors that would repeat on every attempt (400, 413).
func (e *Error) Final() bool {
	switch e.Code {
	case protocol.CodeUnauthorized, protocol.CodeConflict,
		protocol.CodeBadRequest, protocol.CodeTooLarge:
		return true
	}
	return false
}

// Sentinels for the refusals a device usually tells apart; compare with
// errors.Is. They match any *Error with the same code.
var (
	// ErrUnauthorized: the gateway rejected the token (401). Final.
	ErrUnauthorized = &Error{Code: protocol.CodeUnauthorized, Message: "authentication failed"}
	// ErrTakenOver: a newer connection took over the device id (409). Final.
	ErrTakenOver = &Error{Code: protocol.CodeConflict, Message: "session taken over"}
	// ErrUnavailable: no backend, gateway overloaded or draining (503).
	// Dial returns it; a connected client retries with backoff.
	ErrUnavailable = &Error{Code: protocol.CodeUnavailable, Message: "unavailable"}
)

// Errors of the client itself.
var (
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("client: closed")
	// ErrDisconnected: the connection was lost and reconnecting is disabled.
	ErrDisconnected = errors.New("client: disconnected")
	// ErrNotConnected: a best-effort Send while the client is reconnecting.
	ErrNotConnected = errors.New("client: not connected")
	// ErrTooLarge: the payload exceeds the gateway's max_frame.
	ErrTooLarge = errors.New("client: payload exceeds max_frame")
	// ErrHandshake: the gateway answered HELLO with something other than
	// WELCOME or ERROR.
	ErrHandshake = errors.New("client: unexpected handshake answer")
)

// Internal causes of a connection's end; never returned to callers except
// wrapped in ErrDisconnected.
var (
	errGoAway = errors.New("client: gateway sent GOAWAY")
	errDead   = errors.New("client: no traffic from gateway for 3 heartbeats")
)

// isFinal reports whether err ends the client instead of a reconnect.
func isFinal(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Final()
}
