package echo

import "github.com/switchyard-gw/switchyard/backend"

// Handler echoes every message.
type Handler struct{}

var _ backend.Handler = Handler{}

// OnOpen accepts every session.
func (Handler) OnOpen(*backend.Session, backend.OpenReason, []byte) error { return nil }

// OnMessage sends payload back. A reliable echo that cannot be queued
// (full outbox) leaves the message unacknowledged, so the device resends
// it later; a best-effort echo may be dropped.
func (Handler) OnMessage(s *backend.Session, payload []byte, reliable bool) error {
	err := s.Send(payload, reliable)
	if reliable {
		return err
	}
	return nil
}

// OnClose does nothing: there is no state.
func (Handler) OnClose(*backend.Session, string) {}
