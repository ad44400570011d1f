package backend

import (
	"encoding/base64"
	"time"

	"github.com/switchyard-gw/switchyard/internal/trace"
)

// Per-device tracing on the shard side (internal/trace): a gateway spreads
// `switchyard ctl trace DEVICE` to every member by a cluster message; the
// shard then logs, at INFO and tagged with the trace id, what its worker
// does with that device's session: opens (new, resumed, migrated: the
// placement as this shard sees it, with the binding's epoch), upstream
// frames (seq, size, reliable; never the payload), snapshots taken for a
// move, checkpoints and the close with its reason. When no trace is
// active the worker pays one atomic load per event (trace.Table.Any).

// traceEvent logs ev of s if its device is traced; handle calls it after
// the event ran (an Open's reason is known then).
func (srv *Server) traceEvent(s *Session, ev *event) {
	id, ok := srv.trace.Lookup(s.device)
	if !ok {
		return
	}
	l := srv.log.With("trace_id", id, "device", s.device, "session", base64.RawURLEncoding.EncodeToString(s.id[:]))
	switch ev.kind {
	case evUp:
		l.Info("trace: frame up", "seq", ev.seq, "size", len(ev.payload), "reliable", ev.reliable)
	case evOpen:
		l.Info("trace: session open", "reason", ev.reason.String(), "epoch", ev.epoch, "hello_last", ev.helloLast)
	case evSnapshot:
		l.Info("trace: snapshot for a move", "epoch", ev.epoch)
	case evCheckpoint:
		l.Info("trace: checkpoint")
	case evClose:
		l.Info("trace: session closed", "reason", ev.text)
	}
}

// startTrace applies a trace request received from a gateway.
func (srv *Server) startTrace(payload []byte, from string) {
	req, err := trace.Decode(payload)
	if err == nil {
		err = srv.trace.Apply(req, time.Now())
	}
	if err != nil {
		srv.stats.dropMalformed.Add(1)
		srv.log.Warn("trace request refused", "from", from, "err", err)
		return
	}
	srv.log.Info("trace: started", "trace_id", req.ID, "device", req.Device,
		"for", time.Duration(req.ForMs)*time.Millisecond, "from", from)
}
