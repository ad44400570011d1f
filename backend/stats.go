package backend

import "sync/atomic"

// Stats counts what the server did and, above all, every frame it dropped
// and why. All counters only grow except the gauges Links and Sessions.
type Stats struct {
	Links    int64 // gauge: authenticated links now
	Sessions int64 // gauge: sessions in the table now (any state)

	LinksAccepted       uint64 // links that passed authentication
	AuthFailures        uint64 // links closed during authentication (bad MAC, wrong first envelope, timeout)
	LinkTLSFailures     uint64 // links closed in the TLS handshake (LinkTLS: no TLS, or a certificate refused)
	LinksRejected       uint64 // connections closed at accept: MaxLinks reached or server closing
	LinksIdle           uint64 // links closed after 3 ping intervals without input
	LateDeadlines       uint64 // link read deadlines that passed with the gateway's bytes waiting: this shard was late, the link stays (link.Read)
	SlowLinks           uint64 // links closed because a frame that must not be lost found the queue full
	SessionsOpened      uint64 // Opens answered with Opened
	SessionsRefused     uint64 // Opens answered with Refused (draining, stale epoch, moved, taken over, handler refused)
	RefusedMoved        uint64 // Opens refused 503 because the device's session moved (or is moving) to another shard: a stale view
	SessionsClosed      uint64 // OnClose calls
	SessionsExpired     uint64 // sessions forgotten after the resume window
	Takeovers           uint64 // Kick 409 sent to an older binding of the device, or a migrated Open refused 409 for a newer one
	Snapshots           uint64 // State envelopes sent
	Checkpoints         uint64 // Checkpoint envelopes sent (checkpoint.go)
	CheckpointsTooLarge uint64 // checkpoints not sent: larger than MaxCheckpoint
	CheckpointErrors    uint64 // checkpoints not sent: the Snapshotter failed
	Replayed            uint64 // reliable messages handled with Replaying true (after a shard crash)
	DrainTimeouts       uint64 // Drain calls whose context ended with sessions still bound
	PushFailed          uint64 // Push calls that returned an error (not delivered)
	KickFailed          uint64 // Kick calls that returned an error
	ForwardUndelivered  uint64 // forwarded Push/Kick answered "not connected": the session did not arrive in time

	UpDelivered   uint64 // upstream messages given to the handler and accepted
	DropStale     uint64 // envelopes whose epoch (or link) is not the session's current one
	DropUnknown   uint64 // envelopes for a session not in the table
	DropFenced    uint64 // envelopes for a session that handed over its state
	DropGap       uint64 // reliable Up with seq beyond last_up+1
	DropDuplicate uint64 // reliable Up with seq ≤ last_up (re-acknowledged, not delivered)
	DropMailbox   uint64 // Up dropped because the session's mailbox was full
	DropLinkQueue uint64 // best-effort frames (Down, Publish, Ping) dropped on a full link queue
	DropDetached  uint64 // best-effort Down for a session without a gateway binding
	DropOutbox    uint64 // reliable Send refused by a full outbox
	DropMalformed uint64 // envelopes that did not decode, or of a kind a gateway does not send
	HandlerErrors uint64 // OnMessage errors (reliable ones stay unacknowledged)
}

// counters are the live Stats, updated atomically.
type counters struct {
	links, sessions atomic.Int64

	linksAccepted, authFailures, linksRejected, linksIdle, slowLinks            atomic.Uint64
	sessionsOpened, sessionsRefused, sessionsClosed, sessionsExpired, takeovers atomic.Uint64
	snapshots, upDelivered, dropStale, dropUnknown, dropFenced, dropGap         atomic.Uint64
	drainTimeouts, pushFailed, kickFailed, forwardUndelivered, refusedMoved     atomic.Uint64
	dropDuplicate, dropMailbox, dropLinkQueue, dropDetached, dropOutbox         atomic.Uint64
	dropMalformed, handlerErrors, linkTLSFailures                               atomic.Uint64
	checkpoints, checkpointsTooLarge, checkpointErrors, replayed, lateDeadlines atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Links: c.links.Load(), Sessions: c.sessions.Load(),
		LinksAccepted: c.linksAccepted.Load(), AuthFailures: c.authFailures.Load(), LinkTLSFailures: c.linkTLSFailures.Load(),
		LinksRejected: c.linksRejected.Load(), LinksIdle: c.linksIdle.Load(), SlowLinks: c.slowLinks.Load(), LateDeadlines: c.lateDeadlines.Load(),
		SessionsOpened: c.sessionsOpened.Load(), SessionsRefused: c.sessionsRefused.Load(),
		SessionsClosed: c.sessionsClosed.Load(), SessionsExpired: c.sessionsExpired.Load(),
		Takeovers: c.takeovers.Load(), Snapshots: c.snapshots.Load(), UpDelivered: c.upDelivered.Load(),
		DrainTimeouts: c.drainTimeouts.Load(), PushFailed: c.pushFailed.Load(), KickFailed: c.kickFailed.Load(),
		ForwardUndelivered: c.forwardUndelivered.Load(), RefusedMoved: c.refusedMoved.Load(),
		DropStale: c.dropStale.Load(), DropUnknown: c.dropUnknown.Load(), DropFenced: c.dropFenced.Load(),
		DropGap: c.dropGap.Load(), DropDuplicate: c.dropDuplicate.Load(), DropMailbox: c.dropMailbox.Load(),
		DropLinkQueue: c.dropLinkQueue.Load(), DropDetached: c.dropDetached.Load(),
		DropOutbox: c.dropOutbox.Load(), DropMalformed: c.dropMalformed.Load(),
		HandlerErrors: c.handlerErrors.Load(),
		Checkpoints:   c.checkpoints.Load(), CheckpointsTooLarge: c.checkpointsTooLarge.Load(),
		CheckpointErrors: c.checkpointErrors.Load(), Replayed: c.replayed.Load(),
	}
}
