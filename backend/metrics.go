package backend

import (
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/switchyard-gw/switchyard/internal/admin"
)

// The shard's Prometheus series (docs/operations.md "Metrics", served on
// the admin listener, admin.go). Stats stays the one place the counters
// live: the series below are written from a Stats snapshot at each
// scrape, so a counter added to Stats without a row in statSeries fails
// TestStatSeriesCoverStats. Only the handler latency histograms and call
// counters are metrics of their own.

// Handler calls, the call label of the handler series.
const (
	callOpen    = "open"
	callMessage = "message"
	callClose   = "close"
)

// handlerBuckets resolve handler calls from 10 µs (an in-memory echo) to
// 10 s (a handler stuck on a database).
var handlerBuckets = []float64{1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
	1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// shardMetrics are one Server's series, in a set of its own so that
// several shards can live in one process (tests).
type shardMetrics struct {
	set        *metrics.Set
	calls      [3]*metrics.Counter
	duration   [3]*metrics.PrometheusHistogram
	openErrors atomic.Uint64 // OnOpen errors (the session was refused)
}

// statSeries names the series of each Stats field (a gauge when the name
// does not end in _total).
var statSeries = []struct {
	name string
	get  func(*Stats) uint64
}{
	{"switchyard_shard_links", func(s *Stats) uint64 { return uint64(max(s.Links, 0)) }},
	{"switchyard_shard_sessions", func(s *Stats) uint64 { return uint64(max(s.Sessions, 0)) }},
	{"switchyard_shard_links_accepted_total", func(s *Stats) uint64 { return s.LinksAccepted }},
	{"switchyard_shard_link_auth_failures_total", func(s *Stats) uint64 { return s.AuthFailures }},
	{"switchyard_shard_link_tls_failures_total", func(s *Stats) uint64 { return s.LinkTLSFailures }},
	{"switchyard_shard_links_rejected_total", func(s *Stats) uint64 { return s.LinksRejected }},
	{`switchyard_shard_links_closed_total{reason="idle"}`, func(s *Stats) uint64 { return s.LinksIdle }},
	{`switchyard_shard_links_closed_total{reason="slow"}`, func(s *Stats) uint64 { return s.SlowLinks }},
	{"switchyard_shard_link_late_deadlines_total", func(s *Stats) uint64 { return s.LateDeadlines }},
	{"switchyard_shard_sessions_opened_total", func(s *Stats) uint64 { return s.SessionsOpened }},
	{"switchyard_shard_sessions_refused_total", func(s *Stats) uint64 { return s.SessionsRefused }},
	{"switchyard_shard_sessions_refused_moved_total", func(s *Stats) uint64 { return s.RefusedMoved }},
	{"switchyard_shard_sessions_closed_total", func(s *Stats) uint64 { return s.SessionsClosed }},
	{"switchyard_shard_sessions_expired_total", func(s *Stats) uint64 { return s.SessionsExpired }},
	{"switchyard_shard_takeovers_total", func(s *Stats) uint64 { return s.Takeovers }},
	{"switchyard_shard_snapshots_total", func(s *Stats) uint64 { return s.Snapshots }},
	{"switchyard_shard_checkpoints_total", func(s *Stats) uint64 { return s.Checkpoints }},
	{`switchyard_shard_checkpoints_skipped_total{reason="too_large"}`, func(s *Stats) uint64 { return s.CheckpointsTooLarge }},
	{`switchyard_shard_checkpoints_skipped_total{reason="error"}`, func(s *Stats) uint64 { return s.CheckpointErrors }},
	{"switchyard_shard_replayed_total", func(s *Stats) uint64 { return s.Replayed }},
	{"switchyard_shard_drain_timeouts_total", func(s *Stats) uint64 { return s.DrainTimeouts }},
	{`switchyard_shard_call_failures_total{call="push"}`, func(s *Stats) uint64 { return s.PushFailed }},
	{`switchyard_shard_call_failures_total{call="kick"}`, func(s *Stats) uint64 { return s.KickFailed }},
	{"switchyard_shard_forward_undelivered_total", func(s *Stats) uint64 { return s.ForwardUndelivered }},
	{"switchyard_shard_up_delivered_total", func(s *Stats) uint64 { return s.UpDelivered }},
	{`switchyard_shard_dropped_total{reason="stale"}`, func(s *Stats) uint64 { return s.DropStale }},
	{`switchyard_shard_dropped_total{reason="unknown"}`, func(s *Stats) uint64 { return s.DropUnknown }},
	{`switchyard_shard_dropped_total{reason="fenced"}`, func(s *Stats) uint64 { return s.DropFenced }},
	{`switchyard_shard_dropped_total{reason="gap"}`, func(s *Stats) uint64 { return s.DropGap }},
	{`switchyard_shard_dropped_total{reason="duplicate"}`, func(s *Stats) uint64 { return s.DropDuplicate }},
	{`switchyard_shard_dropped_total{reason="mailbox"}`, func(s *Stats) uint64 { return s.DropMailbox }},
	{`switchyard_shard_dropped_total{reason="link_queue"}`, func(s *Stats) uint64 { return s.DropLinkQueue }},
	{`switchyard_shard_dropped_total{reason="detached"}`, func(s *Stats) uint64 { return s.DropDetached }},
	{`switchyard_shard_dropped_total{reason="outbox"}`, func(s *Stats) uint64 { return s.DropOutbox }},
	{`switchyard_shard_dropped_total{reason="malformed"}`, func(s *Stats) uint64 { return s.DropMalformed }},
	{`switchyard_shard_handler_errors_total{call="message"}`, func(s *Stats) uint64 { return s.HandlerErrors }},
}

func newShardMetrics(srv *Server) *shardMetrics {
	s := metrics.NewSet()
	m := &shardMetrics{set: s}
	for i, call := range []string{callOpen, callMessage, callClose} {
		m.calls[i] = s.NewCounter(`switchyard_shard_handler_calls_total{call="` + call + `"}`)
		m.duration[i] = s.NewPrometheusHistogramExt(`switchyard_shard_handler_seconds{call="`+call+`"}`, handlerBuckets)
	}
	s.NewGauge(admin.BuildInfo(srv.cfg.Version, srv.cfg.Commit), func() float64 { return 1 })
	// The shard's name, for dashboards that join a scrape target to the
	// shard label of the gateways' per-shard series.
	s.NewGauge(`switchyard_shard_info{shard="`+admin.Escape(srv.cfg.Shard)+`"}`, func() float64 { return 1 })
	s.NewGauge("switchyard_shard_ready", func() float64 {
		if srv.readiness().Ready {
			return 1
		}
		return 0
	})
	s.RegisterMetricsWriter(srv.writeStats)
	return m
}

// called counts a handler call (index i) that began at start.
func (m *shardMetrics) called(i int, start time.Time) {
	m.calls[i].Inc()
	m.duration[i].UpdateDuration(start)
}

// Indexes of shardMetrics.calls and duration.
const (
	iOpen = iota
	iMessage
	iClose
)

// writeStats writes the Stats series and the link queue gauge.
func (srv *Server) writeStats(w io.Writer) {
	st := srv.Stats()
	for _, s := range statSeries {
		name, v := s.name, s.get(&st)
		if strings.HasSuffix(metricName(name), "_total") {
			metrics.WriteCounterUint64(w, name, v)
		} else {
			metrics.WriteGaugeUint64(w, name, v)
		}
	}
	// Next to its call="message" sibling, the last of statSeries: a
	// series' lines stay together.
	metrics.WriteCounterUint64(w, `switchyard_shard_handler_errors_total{call="open"}`, srv.metrics.openErrors.Load())
	metrics.WriteGaugeUint64(w, "switchyard_shard_link_queue_bytes", uint64(srv.linkQueueBytes()))
}

// linkQueueBytes sums the bytes waiting for the links' writers.
func (srv *Server) linkQueueBytes() int {
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	n := 0
	for l := range srv.links {
		n += l.queued()
	}
	return n
}

func metricName(series string) string {
	name, _, _ := strings.Cut(series, "{")
	return name
}
