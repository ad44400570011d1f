package remote

import "errors"

// ErrNoShard is what a Directory returns when no shard can take a device;
// the device gets 503.
var ErrNoShard = errors.New("remote: no backend shard available")

// Errors of links.
var (
	ErrLinkAuth    = errors.New("remote: link authentication failed")
	ErrLinkClosed  = errors.New("remote: link closed")
	errLinkFull    = errors.New("remote: link queue full")
	errCircuitOpen = errors.New("remote: shard circuit open")
	errLinkTimeout = errors.New("remote: shard silent (link heartbeat timeout)")
	errShardMoved  = errors.New("remote: shard moved to another address")
	// errShardGone is why the links of a shard that left the cluster closed.
	errShardGone = errors.New("remote: shard left the cluster")
)

// Errors of a State ext.
var (
	errStateMalformed = errors.New("remote: malformed session state")
	errStateRefused   = errors.New("remote: shard could not hand over the session state")
)
