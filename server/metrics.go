package server

import (
	rtmetrics "runtime/metrics"
	"strconv"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sys/unix"

	"github.com/switchyard-gw/switchyard/internal/admin"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/server/remote"
)

// Frame kinds, the type label of the frame and byte counters: an index
// per frame type of the protocol, and kindOther for what a device may
// not send (a type the protocol does not know, or one only the gateway
// sends; such a frame ends its connection with 400). Each direction has
// the series of the kinds it carries only. The hot kinds come first: a
// connection keeps its sent counts of those (conn.sent) until its next
// flush; the others are rare and counted at once.
const (
	kindData    = 0
	kindAck     = 1
	kindPing    = 2
	kindPong    = 3
	nHotKinds   = 4 // kinds below this one are kept per connection
	kindHello   = 4
	kindWelcome = 5
	kindGoAway  = 6
	kindError   = 7
	kindOther   = 8
	nKinds      = 9
)

var kindNames = [nKinds]string{"DATA", "ACK", "PING", "PONG", "HELLO", "WELCOME", "GOAWAY", "ERROR", "OTHER"}

// The kinds each direction carries.
var (
	recvKinds = []int{kindData, kindAck, kindPing, kindPong, kindHello, kindOther}
	sentKinds = []int{kindData, kindAck, kindPing, kindPong, kindWelcome, kindGoAway, kindError}
)

// recvKind and sentKind map a frame type to its kind in each direction;
// tables, so the frame path does not branch on the type.
var recvKind, sentKind = kindTable(recvKinds), kindTable(sentKinds)

// kindTable maps the types of kinds to their kind and every other type to
// kindOther.
func kindTable(kinds []int) (k [256]uint8) {
	types := [nKinds]protocol.Type{protocol.TypeData, protocol.TypeAck, protocol.TypePing, protocol.TypePong,
		protocol.TypeHello, protocol.TypeWelcome, protocol.TypeGoAway, protocol.TypeError}
	for i := range k {
		k[i] = kindOther
	}
	for _, kind := range kinds {
		if kind != kindOther {
			k[types[kind]] = uint8(kind)
		}
	}
	return k
}

// Connection states, the state label of switchyard_connections_by_state.
// A connection only moves forward through them.
type connState uint32

const (
	stHandshake connState = iota // accepted, no HELLO handled yet
	stOpening                    // HELLO accepted, waiting for the backend to bind the session
	stReady                      // WELCOME sent: frames flow
	stClosed                     // netpoll closed it (not a gauge)
)

// Handshake results beside the refusal codes, the result label of
// switchyard_handshake_results_total.
const (
	handshakeOK        = "ok"        // WELCOME, new session
	handshakeResumed   = "resumed"   // WELCOME, session resumed
	handshakeAbandoned = "abandoned" // the device closed before its HELLO was answered
)

// handshakeBuckets resolve a handshake from 50 µs (a loopback echo) to 5 s
// (a saturated gateway or a slow shard), 2–2.5× apart.
var handshakeBuckets = []float64{5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2,
	0.1, 0.25, 0.5, 1, 2.5, 5}

// batchBuckets resolve the handling of one input batch from 1 µs (one
// small frame) to 100 ms (a batch stuck behind a lock or the GC).
var batchBuckets = []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 0.1}

// batchFrameBuckets count the frames of one input batch.
var batchFrameBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}

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
	reasonUnreadLimit      = "unread_limit"      // 413: unread input over MaxUnread (a flood)
	reasonRateFlood        = "rate_flood"        // 429: far over the rate (rateFloodBursts), closed at once
	reasonWriteError       = "write_error"       // the socket refused a write
	reasonDrain            = "drain"             // closed after GOAWAY
	reasonShutdown         = "shutdown"          // forced at the end of Close
	reasonTLS              = "tls"               // TLS handshake failed, or a record did not decrypt
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
	proxy  *proxyMetrics // PROXY protocol headers and refusals (proxy.go)
	tls    *tlsMetrics   // tls.go

	accepted            *metrics.Counter
	rejectMaxConns      *metrics.Counter
	rejectAcceptRate    *metrics.Counter
	rejectOverload      *metrics.Counter
	rejectDraining      *metrics.Counter
	rejectPenalty       *metrics.Counter // a source that flooded (penalty.go)
	penaltyUntracked    *metrics.Counter // a flood close not recorded: the penalty table was full
	handshakes          *metrics.Counter
	handshakesAbandoned *metrics.Counter
	resumed             *metrics.Counter
	resumeRejected      *metrics.Counter
	takeovers           *metrics.Counter
	framesIn            [nKinds]*metrics.Counter
	framesOut           [nKinds]*metrics.Counter
	bytesIn             [nKinds]*metrics.Counter
	bytesOut            [nKinds]*metrics.Counter
	goaways             *metrics.Counter
	detachedEvicted     *metrics.Counter // detached sessions forgotten over MaxDetached
	rateLimitDevice     *metrics.Counter // a device went over its frame rate (an excess began)
	rateLimitAccept     *metrics.Counter // a connection refused over the accept rate
	handshakeDuration   *metrics.PrometheusHistogram
	batchDuration       *metrics.PrometheusHistogram // one input batch, all its frames
	batchFrames         *metrics.PrometheusHistogram // frames per input batch
	handshakeResults    map[string]*metrics.Counter  // by result: ok, resumed, abandoned, refusal code

	disconnects map[string]*metrics.Counter
	drops       map[string]*metrics.Counter
	errorsSent  map[int]*metrics.Counter
	reloads     map[string]*metrics.Counter // by result (reload.go)

	conns      atomic.Int64           // open device connections
	connStates [stClosed]atomic.Int64 // open device connections by state (conn.enter)
	sessions   atomic.Int64           // sessions in the table, attached or not
	attached   atomic.Int64           // sessions in the table with a connection
	backlog    atomic.Int64           // connections with bytes their socket would not take
}

func newGatewayMetrics(version, commit string) *gatewayMetrics {
	s := metrics.NewSet()
	m := &gatewayMetrics{
		set:                 s,
		accepted:            s.NewCounter("switchyard_connections_accepted_total"),
		rejectMaxConns:      s.NewCounter(`switchyard_connections_rejected_total{reason="max_conns"}`),
		rejectAcceptRate:    s.NewCounter(`switchyard_connections_rejected_total{reason="accept_rate"}`),
		rejectOverload:      s.NewCounter(`switchyard_connections_rejected_total{reason="overload"}`),
		rejectDraining:      s.NewCounter(`switchyard_connections_rejected_total{reason="draining"}`),
		rejectPenalty:       s.NewCounter(`switchyard_connections_rejected_total{reason="penalty"}`),
		penaltyUntracked:    s.NewCounter("switchyard_penalty_untracked_total"),
		handshakes:          s.NewCounter("switchyard_handshakes_total"),
		handshakesAbandoned: s.NewCounter("switchyard_handshakes_abandoned_total"),
		resumed:             s.NewCounter("switchyard_sessions_resumed_total"),
		resumeRejected:      s.NewCounter("switchyard_resume_rejected_total"),
		takeovers:           s.NewCounter("switchyard_session_takeovers_total"),
		goaways:             s.NewCounter("switchyard_goaways_sent_total"),
		detachedEvicted:     s.NewCounter("switchyard_detached_evicted_total"),
		rateLimitDevice:     s.NewCounter(`switchyard_rate_limit_hits_total{limit="device"}`),
		rateLimitAccept:     s.NewCounter(`switchyard_rate_limit_hits_total{limit="accept"}`),
		handshakeDuration:   s.NewPrometheusHistogramExt("switchyard_handshake_duration_seconds", handshakeBuckets),
		batchDuration:       s.NewPrometheusHistogramExt("switchyard_batch_handle_seconds", batchBuckets),
		batchFrames:         s.NewPrometheusHistogramExt("switchyard_batch_frames", batchFrameBuckets),
		handshakeResults:    map[string]*metrics.Counter{},
		disconnects:         map[string]*metrics.Counter{},
		drops:               map[string]*metrics.Counter{},
		errorsSent:          map[int]*metrics.Counter{},
		reloads:             map[string]*metrics.Counter{},
	}
	for _, k := range recvKinds {
		l := `{type="` + kindNames[k] + `"}`
		m.framesIn[k] = s.NewCounter("switchyard_frames_received_total" + l)
		m.bytesIn[k] = s.NewCounter("switchyard_received_bytes_total" + l)
	}
	for _, k := range sentKinds {
		l := `{type="` + kindNames[k] + `"}`
		m.framesOut[k] = s.NewCounter("switchyard_frames_sent_total" + l)
		m.bytesOut[k] = s.NewCounter("switchyard_sent_bytes_total" + l)
	}
	for _, r := range []string{handshakeOK, handshakeResumed, handshakeAbandoned} {
		m.handshakeResults[r] = s.NewCounter(`switchyard_handshake_results_total{result="` + r + `"}`)
	}
	for _, r := range []string{resultOK, resultInvalid, resultError} {
		m.reloads[r] = s.NewCounter(`switchyard_config_reloads_total{result="` + r + `"}`)
	}
	for _, r := range []string{reasonPeer, reasonBadRequest, reasonAuth, reasonHandshakeTimeout,
		reasonIdleTimeout, reasonTakeover, reasonTooLarge, reasonRateLimit, reasonUnavailable,
		reasonInternal, reasonSlowConsumer, reasonUnreadLimit, reasonRateFlood, reasonWriteError, reasonDrain, reasonShutdown, reasonTLS} {
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
		m.handshakeResults[strconv.Itoa(c)] = s.NewCounter(`switchyard_handshake_results_total{result="` + strconv.Itoa(c) + `"}`)
	}
	m.errorsSent[codeOther] = s.NewCounter(`switchyard_errors_sent_total{code="other"}`)
	m.handshakeResults["other"] = s.NewCounter(`switchyard_handshake_results_total{result="other"}`)
	s.NewGauge("switchyard_connections", func() float64 { return float64(m.conns.Load()) })
	s.NewGauge("switchyard_sessions", func() float64 { return float64(m.sessions.Load()) })
	s.NewGauge("switchyard_write_backlog_connections", func() float64 { return float64(m.backlog.Load()) })
	for st, name := range [stClosed]string{"handshake", "opening", "ready"} {
		s.NewGauge(`switchyard_connections_by_state{state="`+name+`"}`, func() float64 {
			return float64(max(m.connStates[st].Load(), 0))
		})
	}
	for _, st := range []string{"attached", "detached", "opening", "moving"} {
		s.NewGauge(`switchyard_sessions_by_state{state="`+st+`"}`, func() float64 { return m.sessionsIn(st) })
	}
	s.NewGauge(admin.BuildInfo(version, commit), func() float64 { return 1 })
	s.NewGauge("switchyard_fd_limit", fdLimit)
	s.NewGauge("switchyard_gogc", gogc)
	s.NewGauge("switchyard_netpoll_tuned", func() float64 {
		if NetpollTuned() {
			return 1
		}
		return 0
	})
	m.remote = remote.NewMetrics(s)
	m.proxy = newProxyMetrics(s, m.disconnects)
	m.tls = newTLSMetrics(s)
	return m
}

// fdLimit is the process's limit on open files (RLIMIT_NOFILE, soft), read
// at each scrape (a reload of the limit shows). Against it, the
// connections and links are the gateway's file descriptors: counting
// /proc/self/fd (process_open_fds) would read a directory entry per
// connection at every scrape.
func fdLimit() float64 {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return float64(r.Cur)
}

// sessionsIn counts the sessions in a state, from the counts kept
// (a scrape is not atomic across them; each is clamped at 0):
//
//	attached  a connection is bound and frames flow
//	opening   a connection is bound, the backend has not bound the session yet
//	moving    a connection is bound, the session is moving to another shard
//	detached  no connection: waiting for a resume within the resume window
func (m *gatewayMetrics) sessionsIn(state string) float64 {
	bound := m.attached.Load()
	opening, moving := m.connStates[stOpening].Load(), m.remote.Moving()
	var n int64
	switch state {
	case "attached":
		n = bound - opening - moving
	case "detached":
		n = m.sessions.Load() - bound
	case "opening":
		n = opening
	case "moving":
		n = moving
	}
	return float64(max(n, 0))
}

// framesReceived sums the frames received, of every kind.
func (m *gatewayMetrics) framesReceived() uint64 {
	var n uint64
	for _, k := range recvKinds {
		n += m.framesIn[k].Get()
	}
	return n
}

// handshakeResult counts a handshake's outcome (a refusal code the
// protocol does not name as "other").
func (m *gatewayMetrics) handshakeResult(result string) {
	if c := m.handshakeResults[result]; c != nil {
		c.Inc()
		return
	}
	m.handshakeResults["other"].Inc()
}

func (m *gatewayMetrics) disconnect(reason string) { m.disconnects[reason].Inc() }
func (m *gatewayMetrics) drop(reason string)       { m.drops[reason].Inc() }

// errorSent counts an ERROR frame by its code; a code the protocol does
// not name (a shard's handler may refuse with any, e.g. 403) counts as
// "other", which keeps the label's values few.
func (m *gatewayMetrics) errorSent(code int) {
	if c := m.errorsSent[code]; c != nil {
		c.Inc()
		return
	}
	m.errorsSent[codeOther].Inc()
}

// codeOther is the errorsSent key of the codes the protocol does not name.
const codeOther = 0

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

// gogc is the collector's GOGC in force (GOGC, debug.SetGCPercent), from
// runtime/metrics: the gateway's binary sets its own unless GOGC is set.
func gogc() float64 {
	s := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return float64(s[0].Value.Uint64())
}
