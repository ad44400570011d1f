package backend

import (
	"errors"
	"fmt"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Errors returned by Server and Session methods. Compare with errors.Is.
var (
	// ErrNotOwner: the device has no session on this shard and no
	// Forwarder is configured to reach the shard that owns it.
	ErrNotOwner = errors.New("backend: device not on this shard")
	// ErrSessionClosed: the session ended (OnClose ran or is queued).
	ErrSessionClosed = errors.New("backend: session closed")
	// ErrSessionMoved: the session's state was handed to another shard
	// (Snapshot); it takes nothing here until it is opened again.
	ErrSessionMoved = errors.New("backend: session moved")
	// ErrDetached: best-effort data for a session whose device is away;
	// it was dropped. Reliable data waits in the outbox instead.
	ErrDetached = errors.New("backend: session detached, best-effort data dropped")
	// ErrOutboxFull: the session's unacknowledged reliable bytes would
	// exceed MaxOutbox; the frame was not sent.
	ErrOutboxFull = errors.New("backend: session outbox full")
	// ErrLinkQueueFull: the link's queue is full; the best-effort frame
	// was dropped.
	ErrLinkQueueFull = errors.New("backend: link queue full")
	// ErrTooLarge: the payload does not fit in one link frame.
	ErrTooLarge = errors.New("backend: payload too large")
	// ErrBadTopic: a topic is empty or longer than 256 bytes.
	ErrBadTopic = errors.New("backend: topic empty or too long")
	// ErrClosed: the server is closed (or not started).
	ErrClosed = errors.New("backend: server closed")
	// ErrStarted: Start was called twice.
	ErrStarted = errors.New("backend: server already started")
)

// RejectError refuses a session from Handler.OnOpen with a code the
// device is told (ERROR code). OnOpen errors of other types refuse with
// 500 (or the code of a *protocol.Error).
type RejectError struct {
	Code   int    // ERROR code for the device, e.g. 403 or 503
	Reason string // short text sent with it
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("backend: rejected: %d %s", e.Code, e.Reason)
}

// Reject returns a *RejectError.
func Reject(code int, reason string) error { return &RejectError{Code: code, Reason: reason} }

// refusal returns the code and reason an OnOpen error refuses with.
func refusal(err error) (int, string) {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Code, re.Reason
	}
	return protocol.CodeOf(err), err.Error()
}
