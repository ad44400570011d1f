package server

import (
	"strconv"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/server/remote"
)

// Disconnect reasons, the label of switchyard_disconnects_total. Every way a
// connection ends has one.
const (
	reasonPeer             = "peer"              // the device closed
	reasonBadRequest       = "bad_request"       // 400
	reasonAuth             = "auth"              // 401
	reasonHandshakeTimeout = "handshake_timeout" // 408 before HELLO
	reasonIdleTimeout      = "idle_timeout"      // 408 after HELLO
	reasonTakeover         = "takeover"          // 409
	reasonTooLarge         = "too_large"         // 413
	reasonRateLimit        = "rate_limit"        // 429, excess persisted
	reasonUnavailable      = "unavailable"       // 503 after the handshake started
	reasonInternal         = "internal"          // 500
	reasonSlowConsumer     = "slow_consumer"     // outbound queue or outbox over its bound
	reasonWriteError       = "write_error"       // the socket refused a write
	reasonDrain            = "drain"             // closed after GOAWAY
	reasonShutdown         = "shutdown"          // forced at the end of Close
)

// Drop reasons of the device side, the label of
// switchyard_frames_dropped_total (the shard side, server/remote, counts
// stale, backend and move in the same series).
const (
	dropRateLimit = "rate_limit" // over the device's rate, 429
	dropDuplicate = "duplicate"  // reliable seq already accepted (re-ACKed)
	dropGap       = "gap"        // reliable seq beyond the next expected one
	dropStale     = "stale"      // arrived on a connection that lost its session, or for an unknown session
)

// gatewayMetrics are created once per gateway in its own set, so several
// gateways can live in one process (tests) without clashing names. The
// shard side's series (links, moves) are in the same set, created by
// remote.NewMetrics whether or not the gateway has backend shards.
type gatewayMetrics struct {
	set    *metrics.Set
	remote *remote.Metrics

	accepted            *metrics.Counter
	rejectMaxConns      *metrics.Counter
	rejectAcceptRate    *metrics.Counter
	rejectDraining      *metrics.Counter
	handshakes          *metrics.Counter
	handshakesAbandoned *metrics.Counter
	resumed             *metrics.Counter
	resumeRejected      *metrics.Counter
	takeovers           *metrics.Counter
	framesIn            *metrics.Counter
	framesOut           *metrics.Counter
	bytesIn             *metrics.Counter
	bytesOut            *metrics.Counter
	goaways             *metrics.Counter
	handshakeDuration   *metrics.PrometheusHistogram
	frameDuration       *metrics.PrometheusHistogram

	disconnects map[string]*metrics.Counter
	drops       map[string]*metrics.Counter
	errorsSent  map[int]*metrics.Counter
	reloads     map[string]*metrics.Counter // by result (reload.go)

	conns    atomic.Int64 // open device connections
	sessions atomic.Int64 // sessions in the table, attached or not
	backlog  atomic.Int64 // connections with bytes their socket would not take
}

func newGatewayMetrics() *gatewayMetrics {
	s := metrics.NewSet()
	m := &gatewayMetrics{
		set:                 s,
		accepted:            s.NewCounter("switchyard_connections_accepted_total"),
		rejectMaxConns:      s.NewCounter(`switchyard_connections_rejected_total{reason="max_conns"}`),
		rejectAcceptRate:    s.NewCounter(`switchyard_connections_rejected_total{reason="accept_rate"}`),
		rejectDraining:      s.NewCounter(`switchyard_connections_rejected_total{reason="draining"}`),
		handshakes:          s.NewCounter("switchyard_handshakes_total"),
		handshakesAbandoned: s.NewCounter("switchyard_handshakes_abandoned_total"),
		resumed:             s.NewCounter("switchyard_sessions_resumed_total"),
		resumeRejected:      s.NewCounter("switchyard_resume_rejected_total"),
		takeovers:           s.NewCounter("switchyard_session_takeovers_total"),
		framesIn:            s.NewCounter("switchyard_frames_received_total"),
		framesOut:           s.NewCounter("switchyard_frames_sent_total"),
		bytesIn:             s.NewCounter("switchyard_received_bytes_total"),
		bytesOut:            s.NewCounter("switchyard_sent_bytes_total"),
		goaways:             s.NewCounter("switchyard_goaways_sent_total"),
		handshakeDuration:   s.NewPrometheusHistogram("switchyard_handshake_duration_seconds"),
		frameDuration: s.NewPrometheusHistogramExt("switchyard_frame_handle_seconds",
			[]float64{2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 1e-4, 1e-3, 1e-2}),
		disconnects: map[string]*metrics.Counter{},
		drops:       map[string]*metrics.Counter{},
		errorsSent:  map[int]*metrics.Counter{},
		reloads:     map[string]*metrics.Counter{},
	}
	for _, r := range []string{resultOK, resultInvalid, resultError} {
		m.reloads[r] = s.NewCounter(`switchyard_config_reloads_total{result="` + r + `"}`)
	}
	for _, r := range []string{reasonPeer, reasonBadRequest, reasonAuth, reasonHandshakeTimeout,
		reasonIdleTimeout, reasonTakeover, reasonTooLarge, reasonRateLimit, reasonUnavailable,
		reasonInternal, reasonSlowConsumer, reasonWriteError, reasonDrain, reasonShutdown} {
		m.disconnects[r] = s.NewCounter(`switchyard_disconnects_total{reason="` + r + `"}`)
	}
	for _, r := range []string{dropRateLimit, dropDuplicate, dropGap, dropStale} {
		// Got or created: the shard side counts stale drops too.
		m.drops[r] = s.GetOrCreateCounter(`switchyard_frames_dropped_total{reason="` + r + `"}`)
	}
	for _, c := range []int{protocol.CodeBadRequest, protocol.CodeUnauthorized, protocol.CodeTimeout,
		protocol.CodeConflict, protocol.CodeTooLarge, protocol.CodeRateLimited, protocol.CodeInternal,
		protocol.CodeUnavailable} {
		m.errorsSent[c] = s.NewCounter(`switchyard_errors_sent_total{code="` + strconv.Itoa(c) + `"}`)
	}
	s.NewGauge("switchyard_connections", func() float64 { return float64(m.conns.Load()) })
	s.NewGauge("switchyard_sessions", func() float64 { return float64(m.sessions.Load()) })
	s.NewGauge("switchyard_write_backlog_connections", func() float64 { return float64(m.backlog.Load()) })
	m.remote = remote.NewMetrics(s)
	return m
}

func (m *gatewayMetrics) disconnect(reason string) { m.disconnects[reason].Inc() }
func (m *gatewayMetrics) drop(reason string)       { m.drops[reason].Inc() }

func (m *gatewayMetrics) errorSent(code int) {
	if c := m.errorsSent[code]; c != nil {
		c.Inc()
	}
}

// reasonFor maps an ERROR code to the disconnect reason it ends with.
func reasonFor(code int, established bool) string {
	switch code {
	case protocol.CodeBadRequest:
		return reasonBadRequest
	case protocol.CodeUnauthorized:
		return reasonAuth
	case protocol.CodeTimeout:
		if established {
			return reasonIdleTimeout
		}
		return reasonHandshakeTimeout
	case protocol.CodeConflict:
		return reasonTakeover
	case protocol.CodeTooLarge:
		return reasonTooLarge
	case protocol.CodeRateLimited:
		return reasonRateLimit
	case protocol.CodeUnavailable:
		return reasonUnavailable
	}
	return reasonInternal
}
