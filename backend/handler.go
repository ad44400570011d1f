package backend

import "context"

// Handler is the application. The server calls it for every session of
// this shard: OnOpen first, then OnMessage for each upstream message, and
// OnClose once at the end. Calls for one session never overlap and come
// in the order the events arrived; calls for different sessions run
// concurrently on up to Config.Workers goroutines. A call that blocks
// holds one worker and delays that session only.
type Handler interface {
	// OnOpen runs each time a gateway binds the session: once with
	// OpenNew, again with OpenResumed when its device comes back (on any
	// gateway), and with OpenMigrated when the session arrives from
	// another shard, state being what that shard's Snapshotter returned
	// (nil otherwise). An error refuses the binding: the device gets the
	// error's code (see RejectError), and a session refused at its first
	// OnOpen is forgotten without OnClose.
	OnOpen(s *Session, reason OpenReason, state []byte) error
	// OnMessage delivers one upstream DATA payload; payload belongs to
	// the handler. Reliable messages come exactly once and in order; nil
	// accepts one (the gateway ACKs the device only then), an error
	// leaves it unacknowledged so that the device resends it later.
	OnMessage(s *Session, payload []byte, reliable bool) error
	// OnClose runs once when the session ends here: its device stayed
	// away for the resume window, it was taken over by a new session of
	// the same device, it moved to another shard, or the server closed.
	// The session takes no more Sends after it.
	OnClose(s *Session, reason string)
}

// Snapshotter is implemented by handlers whose sessions carry state that
// must survive a move to another shard. Snapshot runs serially with the
// session's other calls, after every message that arrived before the
// gateway asked for the state; its result is OnOpen's state on the new
// shard (OpenMigrated). Keep it small: it travels in one link frame.
type Snapshotter interface {
	Snapshot(s *Session) ([]byte, error)
}

// OpenReason says why OnOpen runs.
type OpenReason uint8

// Open reasons.
const (
	OpenNew      OpenReason = iota // a new session
	OpenResumed                    // a known session, its device back (or taken over by another gateway)
	OpenMigrated                   // the session moved here from another shard, with its state
)

// String returns the reason as spelled on the link ("new", "resumed",
// "migrated").
func (r OpenReason) String() string {
	switch r {
	case OpenResumed:
		return "resumed"
	case OpenMigrated:
		return "migrated"
	}
	return "new"
}

// parseOpenReason reads the reason of an Open; unknown reasons are "new".
func parseOpenReason(s string) OpenReason {
	switch s {
	case "resumed":
		return OpenResumed
	case "migrated":
		return OpenMigrated
	}
	return OpenNew
}

// Forwarder reaches devices whose sessions are not on this shard: the
// cluster finds the owning shard and hands the call to it. Set it in
// Config; nil means local only.
type Forwarder interface {
	// Push delivers payload to deviceID's session on its owning shard.
	Push(deviceID string, payload []byte, reliable bool) error
	// Kick closes deviceID's connection with ERROR code through its
	// owning shard.
	Kick(deviceID string, code int, reason string) error
}

// Announcer publishes this shard's membership (gossip metadata: role,
// shard name, link address, state). Set it in Config; nil announces
// nothing.
type Announcer interface {
	Announce(ctx context.Context, a Announcement) error
}

// Announcement is what the shard tells the cluster about itself.
type Announcement struct {
	Shard string      // Config.Shard
	Link  string      // the bound link address (Server.Addr)
	State MemberState // active, draining or left
	// Labels are the shard's labels (Config.Labels), for the canary
	// rules; the Announcer must not modify them.
	Labels map[string]string
}

// MemberState is a shard's state in the cluster.
type MemberState uint8

// Member states, in the order a shard goes through them.
const (
	StateActive   MemberState = iota // takes new sessions
	StateDraining                    // refuses new sessions; its sessions move away
	StateLeft                        // gone
)

// String returns the state's name.
func (m MemberState) String() string {
	switch m {
	case StateDraining:
		return "draining"
	case StateLeft:
		return "left"
	}
	return "active"
}
