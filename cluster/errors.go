package cluster

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these (or a
// *MetaSizeError) so that callers can test them with errors.Is / errors.As.
var (
	// ErrClosed is returned by Start and the other operations once Close or
	// Leave began. A Node is used once: create a new one to rejoin.
	ErrClosed = errors.New("cluster: node closed")
	// ErrStarted is returned by a second call to Start.
	ErrStarted = errors.New("cluster: node already started")
	// ErrNotStarted is returned by operations that need a running node.
	ErrNotStarted = errors.New("cluster: node not started")
	// ErrJoin is wrapped by Start when no seed could be reached before its
	// context ended. A wrong gossip key or another cluster label look the
	// same from the joining side: the seeds drop the connection.
	ErrJoin = errors.New("cluster: join failed")
	// ErrUnknownMember is returned by SendTo for a name that is not an
	// alive member.
	ErrUnknownMember = errors.New("cluster: unknown member")
	// ErrMessageTooLarge is returned by SendTo for a payload over
	// MaxMessageSize.
	ErrMessageTooLarge = errors.New("cluster: message too large")
	// ErrBroadcastTimeout is wrapped by UpdateMeta when the new metadata
	// was applied locally but not yet fully gossiped within the update
	// timeout; it keeps spreading in the background.
	ErrBroadcastTimeout = errors.New("cluster: broadcast not confirmed in time")
	// ErrInvalidMeta is wrapped by metadata validation and decoding errors.
	ErrInvalidMeta = errors.New("cluster: invalid metadata")
)

// MetaSizeError reports metadata whose encoding exceeds MetaMaxSize (most
// often because of too many or too long labels).
type MetaSizeError struct {
	Size  int // encoded size in bytes
	Limit int // MetaMaxSize
}

func (e *MetaSizeError) Error() string {
	return fmt.Sprintf("cluster: metadata is %d bytes encoded, over the %d-byte gossip limit (shorten labels, shard, link or version)", e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrInvalidMeta) true for size errors too.
func (e *MetaSizeError) Is(target error) bool { return target == ErrInvalidMeta }
