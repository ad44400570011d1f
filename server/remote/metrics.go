package remote

import (
	"io"
	"maps"
	"slices"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/switchyard-gw/switchyard/internal/admin"
	"github.com/switchyard-gw/switchyard/router"
)

// Drop reasons of the shard side, values of the reason label of
// switchyard_frames_dropped_total (the device side counts the others in
// the same series).
const (
	dropStale   = "stale"   // for an unknown session, or not the binding's (epoch, move); downstream too
	dropBackend = "backend" // the shard's link is down or its queue full (reliable ones are not ACKed)
	dropMove    = "move"    // the session was moving and its hold buffer was full (reliable ones are not ACKed)
)

// Move causes, the cause label of switchyard_session_moves_started_total
// and switchyard_session_move_duration_seconds.
const (
	causeLeave  = "leave"  // the session's shard left this gateway's ring: draining, gone or down
	causeJoin   = "join"   // the ring gave the device to another shard (one joined, or came back)
	causeCanary = "canary" // a canary rule placed the device, or stopped placing it, elsewhere
	causeCrash  = "crash"  // the shard failed; the session reopens from its checkpoint (crash.go)
)

// moveBuckets resolve a move from 1 ms (two idle shards on one host) to
// 30 s (MoveTimeout's order).
var moveBuckets = []float64{1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

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

	movesStarted map[string]*metrics.Counter             // by cause
	moveDuration map[string]*metrics.PrometheusHistogram // by cause, moves that ended "ok"
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
		movesStarted: map[string]*metrics.Counter{},
		moveDuration: map[string]*metrics.PrometheusHistogram{},
		moves:        map[string]*metrics.Counter{},
		drops: map[string]*metrics.Counter{
			dropStale:   set.GetOrCreateCounter(`switchyard_frames_dropped_total{reason="` + dropStale + `"}`),
			dropBackend: set.NewCounter(`switchyard_frames_dropped_total{reason="` + dropBackend + `"}`),
			dropMove:    set.NewCounter(`switchyard_frames_dropped_total{reason="` + dropMove + `"}`),
		},
	}
	for _, c := range []string{causeLeave, causeJoin, causeCanary, causeCrash} {
		l := `{cause="` + c + `"}`
		m.movesStarted[c] = set.NewCounter("switchyard_session_moves_started_total" + l)
		m.moveDuration[c] = set.NewPrometheusHistogramExt("switchyard_session_move_duration_seconds"+l, moveBuckets)
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

// Moving is the number of sessions moving to another shard now.
func (m *Metrics) Moving() int64 { return m.moving.Load() }

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
	lateDeadlines                *metrics.Counter // read deadlines that passed with the shard's bytes waiting: the gateway was late (link.lateDeadline)
	shardDown                    *metrics.Counter // the shard's last link failed: out of this gateway's ring until a link is back
	tlsFailures                  *metrics.Counter // link TLS handshakes that failed (certificate, or a shard without TLS)
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
		lateDeadlines: c("switchyard_link_late_deadlines_total"),
		shardDown:     c("switchyard_shard_down_total"),
		tlsFailures:   c("switchyard_link_tls_failures_total"),
	}
}

// Circuit states, the state label of switchyard_shard_circuit_state.
var circuitStates = []router.State{router.Closed, router.Open, router.HalfOpen}

// writeShards writes, at each scrape, one gauge set per shard this
// gateway links to (shards are few; their names are the label): the
// bytes queued on its links, its authenticated links, whether it is down
// (out of this gateway's ring until a link is back), and its circuit's
// state, one series per state with 1 on the current one.
func (r *Backend) writeShards(w io.Writer) {
	type shardView struct {
		links []*link
		down  bool
	}
	r.mu.Lock()
	views := make(map[string]shardView, len(r.shards))
	for name, sl := range r.shards {
		views[name] = shardView{links: slices.Clone(sl.links), down: r.down[name]}
	}
	r.mu.Unlock()
	names := slices.Sorted(maps.Keys(views))
	for _, name := range names {
		v := views[name]
		queued, up := 0, 0
		for _, l := range v.links {
			if l == nil {
				continue
			}
			l.mu.Lock()
			queued += len(l.out)
			if l.up && !l.closed {
				up++
			}
			l.mu.Unlock()
		}
		lb := `{shard="` + admin.Escape(name) + `"}`
		metrics.WriteGaugeUint64(w, "switchyard_link_queue_bytes"+lb, uint64(queued))
		metrics.WriteGaugeUint64(w, "switchyard_shard_links_up"+lb, uint64(up))
		metrics.WriteGaugeUint64(w, "switchyard_shard_down"+lb, boolGauge(v.down))
	}
	for _, st := range r.circuits.Snapshot() {
		// Only the shards linked to: a shard gossip reported gone
		// (DropShard) keeps its circuit, tripped by its links' end, and
		// would otherwise show "open" for good after a clean drain,
		// firing SwitchyardCircuitOpen (deploy/prometheus/alerts.yml).
		if _, linked := views[st.Shard]; !linked {
			continue
		}
		for _, s := range circuitStates {
			metrics.WriteGaugeUint64(w, `switchyard_shard_circuit_state{shard="`+admin.Escape(st.Shard)+
				`",state="`+s.String()+`"}`, boolGauge(st.State == s))
		}
	}
}

func boolGauge(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
