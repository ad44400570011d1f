package remote

import (
	"github.com/switchyard-gw/switchyard/internal/admin"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
)

// Drop reasons of the shard side, values of the reason label of
// switchyard_frames_dropped_total (the device side counts the others in
// the same series).
const (
	dropStale   = "stale"   // for an unknown session, or not the binding's (epoch, move)
	dropBackend = "backend" // the shard's link is down or its queue full (reliable ones are not ACKed)
	dropMove    = "move"    // the session was moving and its hold buffer was full (reliable ones are not ACKed)
)

// Move outcomes, the label of switchyard_session_moves_total. Every move
// ends with exactly one.
const (
	moveOK       = "ok"       // the session lives on its new shard; the device saw nothing
	moveClosed   = "closed"   // the device's connection ended during the move
	moveSnapshot = "snapshot" // the old shard could not hand over the state
	moveNoShard  = "no_shard" // no shard to move to (the ring became empty)
	moveLink     = "link"     // a link to the old or the new shard failed
	moveRefused  = "refused"  // the new shard refused the session
	moveTimeout  = "timeout"  // no Opened within MoveTimeout
)

// Metrics are the shard side's series. The gateway creates them once in
// its own set, with or without backend shards, so that every gateway
// exposes the same series.
type Metrics struct {
	set *metrics.Set

	movesStarted *metrics.Counter
	moveDuration *metrics.PrometheusHistogram
	moves        map[string]*metrics.Counter
	drops        map[string]*metrics.Counter
	moving       atomic.Int64 // sessions moving now
	links        atomic.Int64 // authenticated links to backend shards

	keptBytes  atomic.Int64 // bytes held by the sessions' keeps (keep.go)
	keptDrops  [2]*metrics.Counter
	recoveries map[string]*metrics.Counter
}

// Outcomes of a recovery attempt after a shard failed (crash.go), the
// label of switchyard_session_recoveries_total.
const (
	recoverStarted = "started"       // reopening from the checkpoint: the move's end is counted in switchyard_session_moves_total
	recoverNoCkpt  = "no_checkpoint" // the shard does not checkpoint the session, or none arrived yet: 503
	recoverGap     = "gap"           // upstream frames after the checkpoint were dropped (CheckpointBuffer): 503
	recoverNoShard = "no_shard"      // no other shard, or no link to it: 503
)

func (m *Metrics) keepBytes(delta int) { m.keptBytes.Add(int64(delta)) }

func (m *Metrics) keepDropped(up bool) {
	if up {
		m.keptDrops[0].Inc()
	} else {
		m.keptDrops[1].Inc()
	}
}

// NewMetrics creates the shard side's series in set (a new set when nil).
// The stale drop counter is shared with the device side: it is got or
// created, the others are created.
func NewMetrics(set *metrics.Set) *Metrics {
	if set == nil {
		set = metrics.NewSet()
	}
	m := &Metrics{
		set:          set,
		movesStarted: set.NewCounter("switchyard_session_moves_started_total"),
		moveDuration: set.NewPrometheusHistogram("switchyard_session_move_duration_seconds"),
		moves:        map[string]*metrics.Counter{},
		drops: map[string]*metrics.Counter{
			dropStale:   set.GetOrCreateCounter(`switchyard_frames_dropped_total{reason="` + dropStale + `"}`),
			dropBackend: set.NewCounter(`switchyard_frames_dropped_total{reason="` + dropBackend + `"}`),
			dropMove:    set.NewCounter(`switchyard_frames_dropped_total{reason="` + dropMove + `"}`),
		},
	}
	for _, r := range []string{moveOK, moveClosed, moveSnapshot, moveNoShard, moveLink, moveRefused, moveTimeout} {
		m.moves[r] = set.NewCounter(`switchyard_session_moves_total{result="` + r + `"}`)
	}
	m.keptDrops[0] = set.NewCounter(`switchyard_checkpoint_dropped_total{direction="up"}`)
	m.keptDrops[1] = set.NewCounter(`switchyard_checkpoint_dropped_total{direction="down"}`)
	m.recoveries = map[string]*metrics.Counter{}
	for _, r := range []string{recoverStarted, recoverNoCkpt, recoverGap, recoverNoShard} {
		m.recoveries[r] = set.NewCounter(`switchyard_session_recoveries_total{result="` + r + `"}`)
	}
	set.NewGauge("switchyard_checkpoint_bytes", func() float64 { return float64(m.keptBytes.Load()) })
	set.NewGauge("switchyard_backend_links", func() float64 { return float64(m.links.Load()) })
	set.NewGauge("switchyard_sessions_moving", func() float64 { return float64(m.moving.Load()) })
	return m
}

func (m *Metrics) drop(reason string) { m.drops[reason].Inc() }

// placed counts a session opened or moved onto a shard by a canary rule,
// in switchyard_canary_placements_total{rule, result}: result "placed"
// (on the rule's shards) or "fallback" (no shard carries the rule's
// labels). Rule names are tokens (router.ValidToken) and few, so the
// series are got or created here, not at start-up: rules change at run
// time.
func (m *Metrics) placed(p Placement) {
	if p.Rule == "" {
		return
	}
	result := "placed"
	if p.Fallback {
		result = "fallback"
	}
	m.set.GetOrCreateCounter(`switchyard_canary_placements_total{rule="` + p.Rule + `",result="` + result + `"}`).Inc()
}

// linkMetrics are one shard's link counters, labelled by shard name (a
// bounded set), created when the gateway first links to the shard.
type linkMetrics struct {
	sentEnvelopes, recvEnvelopes *metrics.Counter
	sentBytes, recvBytes         *metrics.Counter
	dropped, failures            *metrics.Counter
	gone                         *metrics.Counter // links closed because gossip reported the shard gone
	timeouts                     *metrics.Counter // links closed because the shard was silent for LinkTimeout
	shardDown                    *metrics.Counter // the shard's last link failed: out of this gateway's ring until a link is back
}

func (m *Metrics) link(shard string) *linkMetrics {
	l := `{shard="` + admin.Escape(shard) + `"}`
	c := func(name string) *metrics.Counter { return m.set.GetOrCreateCounter(name + l) }
	return &linkMetrics{
		sentEnvelopes: c("switchyard_link_sent_envelopes_total"),
		recvEnvelopes: c("switchyard_link_received_envelopes_total"),
		sentBytes:     c("switchyard_link_sent_bytes_total"),
		recvBytes:     c("switchyard_link_received_bytes_total"),
		dropped:       c("switchyard_link_dropped_envelopes_total"),
		failures:      c("switchyard_link_failures_total"),
		gone:          c("switchyard_link_shard_gone_total"),
		timeouts:      c("switchyard_link_timeouts_total"),
		shardDown:     c("switchyard_shard_down_total"),
	}
}
