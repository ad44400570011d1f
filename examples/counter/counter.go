package counter

import (
	"encoding/binary"
	"errors"
	"strconv"

	"github.com/switchyard-gw/switchyard/backend"
)

// Handler counts each session's messages.
type Handler struct{}

var (
	_ backend.Handler     = Handler{}
	_ backend.Snapshotter = Handler{}
)

// State is one session's counter.
type State struct {
	Count   uint64 // messages handled, reliable and best effort
	LastSeq uint32 // seq of the last reliable message
}

// stateKey is the Session.Set key of a session's *State.
const stateKey = "counter"

// stateSize is the encoded size of a State.
const stateSize = 12

// ErrBadState: a migrated session's state is not a counter state.
var ErrBadState = errors.New("counter: bad state")

// MarshalBinary encodes the state: count u64, last seq u32, big endian.
func (st *State) MarshalBinary() ([]byte, error) {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, stateSize), st.Count)
	return binary.BigEndian.AppendUint32(b, st.LastSeq), nil
}

// UnmarshalBinary decodes what MarshalBinary made.
func (st *State) UnmarshalBinary(b []byte) error {
	if len(b) != stateSize {
		return ErrBadState
	}
	st.Count, st.LastSeq = binary.BigEndian.Uint64(b), binary.BigEndian.Uint32(b[8:])
	return nil
}

// Of returns the session's counter state (nil before OnOpen).
func Of(s *backend.Session) *State {
	st, _ := s.Get(stateKey).(*State)
	return st
}

// OnOpen starts a counter, keeps it (resumed) or restores it (migrated).
// A migrated session with a state that does not decode is refused.
func (Handler) OnOpen(s *backend.Session, reason backend.OpenReason, state []byte) error {
	st := Of(s)
	switch {
	case reason == backend.OpenMigrated && len(state) > 0:
		st = &State{}
		if err := st.UnmarshalBinary(state); err != nil {
			return backend.Reject(500, err.Error())
		}
	case st == nil:
		st = &State{}
	}
	s.Set(stateKey, st)
	return nil
}

// OnMessage counts the message and replies "<shard> <count>" with the
// message's reliability, except to a message replayed after a shard crash
// (the device has that reply from the crashed shard).
func (Handler) OnMessage(s *backend.Session, payload []byte, reliable bool) error {
	st := Of(s)
	st.Count++
	if reliable {
		st.LastSeq = s.Seq()
	}
	if s.Replaying() {
		// Replayed after a shard crash: the device has this message's
		// reply already (from the crashed shard); only the count catches up.
		return nil
	}
	reply := strconv.AppendUint([]byte(s.Shard()+" "), st.Count, 10)
	err := s.Send(reply, reliable)
	if err != nil && reliable {
		st.Count-- // not accepted: the device resends it
		st.LastSeq = s.Seq() - 1
		return err
	}
	return nil
}

// OnClose drops the counter.
func (Handler) OnClose(s *backend.Session, _ string) { s.Set(stateKey, nil) }

// Snapshot encodes the counter for the shard the session moves to.
func (Handler) Snapshot(s *backend.Session) ([]byte, error) {
	st := Of(s)
	if st == nil {
		return nil, nil
	}
	return st.MarshalBinary()
}
