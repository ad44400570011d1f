package remote

import "github.com/switchyard-gw/switchyard/protocol"

// moveState is a shard's State ext (protocol.SessionState): the gateway
// checks it and passes it on as the migrated Open's ext, so the outbox and
// the topics move with the session without the gateway keeping them.
type moveState = protocol.SessionState

// decodeMoveState decodes and checks a State ext: the shard did not
// report an error (code), and the outbox is in strictly increasing seq
// order, none above down_seq (the new shard numbers on from there).
func decodeMoveState(p []byte) (moveState, error) {
	var x moveState
	if err := protocol.Unmarshal(p, &x); err != nil {
		return moveState{}, errStateMalformed
	}
	if x.Code != 0 {
		return moveState{}, errStateRefused
	}
	var prev uint32
	for _, f := range x.Outbox {
		if f.Seq <= prev || f.Seq > x.DownSeq {
			return moveState{}, errStateMalformed
		}
		prev = f.Seq
	}
	return x, nil
}

// migratedOpen turns a State into the ext of the Open that binds the
// session on its new shard: reason migrated, this gateway as the node,
// and down_seq as the device's last: every downstream frame the old shard
// numbered was written to the device before its State, so the new shard
// resends nothing and keeps the outbox until the device ACKs.
func migratedOpen(x *moveState, device, node string) ([]byte, error) {
	x.Device, x.Reason, x.Node = device, "migrated", node
	x.Code = 0
	return protocol.Marshal(x)
}
