package main

// Moves (issue 7): with --drain-shard-after, --kill-shard-after and
// --add-shard-after the run drains one shard (SIGTERM to its process),
// kills one (SIGKILL: its sessions are recovered from their checkpoints,
// as moves) or starts one more, a fixed
// time after every session is up, and measures the moves that follow from
// the gateways' metrics, polled every moveEventPoll:
//
//	event ──▶ first move started ──▶ every move ended, none moving, every
//	(t=0)     (moves_started rises)   gateway's ring at its new size (settled)
//
// It is settled once that state has held for moveEventQuiet (and, for a
// drain, the shard process has exited: it exits once no gateway holds a
// session there). The latency around it comes from loadgen's progress
// lines (one a second: p50, p99 of that second, replies that named a new
// shard) in loadgen.log.

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	moveEventPoll   = 100 * time.Millisecond // how often the gateways are read during an event
	moveEventQuiet  = time.Second            // settled: no move started or running for this long
	moveEventWindow = 20 * time.Second       // an event not settled by then is reported unsettled
	latencyBefore   = 10                     // seconds of progress lines before an event: its baseline
)

// validate checks the flags across each other.
func (c *config) validate() error {
	var errs []error
	switch c.App {
	case "echo", "counter", "rooms":
	default:
		errs = append(errs, fmt.Errorf("--app %q: echo, counter or rooms", c.App))
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		errs = append(errs, errors.New("--rate must be finite and >= 0"))
	}
	if c.DrainAfter < 0 || c.KillAfter < 0 || c.AddAfter < 0 || c.MoveTarget < 0 || c.GwDrainAfter < 0 || c.GwKillAfter < 0 || c.StormAfter < 0 {
		errs = append(errs, errors.New("--drain-shard-after, --kill-shard-after, --add-shard-after, --move-target, --drain-gateway-after, --kill-gateway-after and --storm-after must be >= 0"))
	}
	gws := cmp.Or(c.Gateways, (c.Sessions+c.PerGateway-1)/max(c.PerGateway, 1))
	if max(c.GwDrainAfter, c.GwKillAfter) > 0 && gws < 2 {
		errs = append(errs, errors.New("--drain-gateway-after and --kill-gateway-after need at least 2 gateways"))
	}
	if c.KillGateways < 0 || c.GwKillAfter > 0 && c.KillGateways >= gws {
		errs = append(errs, fmt.Errorf("--kill-gateways %d: fewer than the gateways (%d), and not negative", c.KillGateways, gws))
	}
	if c.PeakTarget < 0 || math.IsNaN(c.PeakTarget) {
		errs = append(errs, errors.New("--reconnect-peak-target must be >= 0"))
	}
	if last := max(c.GwDrainAfter, c.GwKillAfter, c.StormAfter); last > 0 && c.Hold < last+gwEventWindow {
		errs = append(errs, fmt.Errorf("--hold %v is too short for a gateway event at %v: at least %v", c.Hold, last, last+gwEventWindow))
	}
	if (c.DrainAfter > 0 || c.KillAfter > 0) && c.Backends < 2 {
		errs = append(errs, errors.New("--drain-shard-after and --kill-shard-after need at least 2 --backends"))
	}
	if c.DrainAfter > 0 && c.KillAfter > 0 {
		errs = append(errs, errors.New("--drain-shard-after and --kill-shard-after both stop the last shard: choose one"))
	}
	if last := max(c.DrainAfter, c.KillAfter, c.AddAfter); last > 0 && c.Hold < last+moveEventWindow {
		errs = append(errs, fmt.Errorf("--hold %v is too short for an event at %v: at least %v", c.Hold, last, last+moveEventWindow))
	}
	return errors.Join(errs...)
}

// moveEvent is what one drain or join did.
type moveEvent struct {
	Kind  string  `json:"kind"`  // "drain", "kill" or "join"
	Shard string  `json:"shard"` // the process drained or started
	AtS   float64 `json:"at_s"`  // seconds after loadgen started
	// From the event: the first move started, the moves settled (every
	// one ended, none moving, rings at their new size; an upper bound,
	// one poll late at most), the drained shard's process exited.
	FirstMoveS float64 `json:"first_move_s"`
	SettledS   float64 `json:"settled_s"`
	ShardExitS float64 `json:"shard_exit_s,omitempty"`
	Unsettled  bool    `json:"unsettled,omitempty"` // not settled within moveEventWindow
	// Gateways' counters over the event (summed).
	MovesStarted float64            `json:"moves_started"`
	Moves        map[string]float64 `json:"moves"` // by result
	MoveMeanS    float64            `json:"move_mean_s"`
	MoveP50S     float64            `json:"move_p50_le_s"` // bucket bounds of switchyard_session_move_duration_seconds
	MoveP99S     float64            `json:"move_p99_le_s"`
	MoveMaxS     float64            `json:"move_max_le_s"`
	DroppedMove  float64            `json:"dropped_move"` // switchyard_frames_dropped_total{reason="move"}
	Disconnects  float64            `json:"disconnects"`
	// From loadgen's progress lines: median of the per-second p50/p99 in
	// the latencyBefore seconds before, the highest in the seconds of the
	// move, and the replies that named a new shard.
	P50BeforeMS  float64 `json:"p50_before_ms"`
	P99BeforeMS  float64 `json:"p99_before_ms"`
	P50DuringMS  float64 `json:"p50_during_ms"`
	P99DuringMS  float64 `json:"p99_during_ms"`
	DeviceMoves  int64   `json:"device_moves"`
	DeviceErrors int64   `json:"device_errors"` // errors, disconnects and reconnects loadgen saw in those seconds
}

// failed is the number of moves that did not end well.
func (e *moveEvent) failed() float64 {
	var n float64
	for r, v := range e.Moves {
		if r != "ok" {
			n += v
		}
	}
	return n
}

// events runs the planned drain and join in the background.
type events struct {
	up     chan time.Time
	done   chan struct{}
	cancel context.CancelFunc
	once   sync.Once
	out    []moveEvent
	gw     []gatewayEvent
}

type planned struct {
	kind  string
	after time.Duration
}

// plan is the events of the run in the order they happen.
func (c *config) plan() []planned {
	var p []planned
	if c.DrainAfter > 0 {
		p = append(p, planned{"drain", c.DrainAfter})
	}
	if c.KillAfter > 0 {
		p = append(p, planned{"kill", c.KillAfter})
	}
	if c.AddAfter > 0 {
		p = append(p, planned{"join", c.AddAfter})
	}
	if c.GwDrainAfter > 0 {
		p = append(p, planned{"gateway-drain", c.GwDrainAfter})
	}
	if c.GwKillAfter > 0 {
		p = append(p, planned{"gateway-kill", c.GwKillAfter})
	}
	if c.StormAfter > 0 {
		p = append(p, planned{"storm", c.StormAfter})
	}
	slices.SortStableFunc(p, func(a, b planned) int { return int(a.after - b.after) })
	return p
}

// startEvents starts the goroutine that runs the planned events once
// allUp says every session is up; start is loadgen's start.
func (cl *cluster) startEvents(ctx context.Context, c *config, start time.Time) *events {
	e := &events{up: make(chan time.Time, 1), done: make(chan struct{})}
	ctx, e.cancel = context.WithCancel(ctx)
	go func() {
		defer close(e.done)
		plan := c.plan()
		if len(plan) == 0 {
			return
		}
		var upAt time.Time
		select {
		case upAt = <-e.up:
		case <-ctx.Done():
			return
		}
		ring := c.Backends
		for _, p := range plan {
			select {
			case <-time.After(time.Until(upAt.Add(p.after))):
			case <-ctx.Done():
				return
			}
			switch p.kind {
			case "gateway-drain", "gateway-kill", "storm":
				gev := cl.runGatewayEvent(ctx, c, p.kind, start)
				logGatewayEvent(gev)
				e.gw = append(e.gw, gev)
				continue
			case "drain", "kill":
				ring--
			default:
				ring++
			}
			ev := cl.runEvent(ctx, c, p.kind, ring, start)
			fmt.Fprintf(os.Stderr, "scale: %s of %s at t=%.1fs: first move after %.2fs, settled after %.2fs, moves %v\n",
				ev.Kind, ev.Shard, ev.AtS, ev.FirstMoveS, ev.SettledS, ev.Moves)
			e.out = append(e.out, ev)
		}
	}()
	return e
}

// allUp tells the events when every session was up.
func (e *events) allUp(t time.Time) {
	select {
	case e.up <- t:
	default:
	}
}

// wait stops the events (an event still running is cut short) and
// returns what they measured.
func (e *events) wait() ([]moveEvent, []gatewayEvent) {
	e.once.Do(e.cancel)
	<-e.done
	return e.out, e.gw
}

// runEvent drains or adds a shard and follows the moves until they
// settle; ring is the shard count the gateways' rings have after it.
func (cl *cluster) runEvent(ctx context.Context, c *config, kind string, ring int, start time.Time) moveEvent {
	ev := moveEvent{Kind: kind}
	base := readMoves(cl.gatewayPages())
	var shard *proc
	t0 := time.Now()
	switch kind {
	case "drain":
		shard = cl.shards()[c.Backends-1]
		shard.cmd.Process.Signal(syscall.SIGTERM)
	case "kill":
		// A crash: the gateways reopen its sessions on the others from
		// their checkpoints (docs/guarantees.md "Shard crash").
		shard = cl.shards()[c.Backends-1]
		shard.cmd.Process.Signal(syscall.SIGKILL)
	default:
		p, err := cl.startBackend(c)
		if err != nil {
			ev.Shard, ev.Unsettled = err.Error(), true
			return ev
		}
		shard = p
	}
	ev.Shard, ev.AtS = shard.name, t0.Sub(start).Seconds()
	var r moveReading
	var quietSince time.Duration = -1
	for {
		r = readMoves(cl.gatewayPages())
		r.RingMin, r.RingMax = cl.ringSizes()
		el := time.Since(t0)
		if ev.FirstMoveS == 0 && r.Started > base.Started {
			ev.FirstMoveS = el.Seconds()
		}
		if r.settled(base, ring) {
			if quietSince < 0 {
				quietSince = el
			}
		} else {
			quietSince = -1
		}
		exited := kind != "drain" || shard.exited()
		if quietSince >= 0 && el-quietSince >= moveEventQuiet && exited {
			ev.SettledS = quietSince.Seconds()
			break
		}
		if el > moveEventWindow || ctx.Err() != nil {
			ev.Unsettled = true
			ev.SettledS = el.Seconds()
			break
		}
		select {
		case <-time.After(moveEventPoll):
		case <-ctx.Done():
		}
	}
	if kind == "drain" && shard.exited() {
		ev.ShardExitS = shard.ended.Sub(t0).Seconds()
	}
	r.delta(base, &ev)
	return ev
}

// gatewayPages reads every gateway's /metrics at once.
func (cl *cluster) gatewayPages() []map[string]float64 {
	pages := make([]map[string]float64, len(cl.gateways))
	var wg sync.WaitGroup
	for i, g := range cl.gateways {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pages[i], _ = getMetrics("http://" + g.admin + "/metrics")
		}()
	}
	wg.Wait()
	return pages
}

// ringSizes is the fewest and the most shards on a gateway's ring (-1
// when a gateway did not answer).
func (cl *cluster) ringSizes() (lo, hi int) {
	lo, hi = math.MaxInt, -1
	for _, g := range cl.gateways {
		if g.exited() { // a gateway event's
			continue
		}
		var ring struct {
			Shards []string `json:"shards"`
		}
		n := -1
		if err := getJSON("http://"+g.admin+"/api/v1/cluster/ring", &ring); err == nil {
			n = len(ring.Shards)
		}
		lo, hi = min(lo, n), max(hi, n)
	}
	return lo, hi
}

// moveReading is the gateways' move metrics, summed.
type moveReading struct {
	Started     float64
	Results     map[string]float64
	Moving      float64
	DurSum      float64
	DurCount    float64
	Buckets     map[float64]float64 // le → cumulative count
	DroppedMove float64
	Disconnects float64
	Scraped     int // gateways that answered
	RingMin     int
	RingMax     int
}

const moveHist = "switchyard_session_move_duration_seconds"

func readMoves(pages []map[string]float64) moveReading {
	r := moveReading{Results: map[string]float64{}, Buckets: map[float64]float64{}}
	for _, m := range pages {
		if m == nil {
			continue
		}
		r.Scraped++
		for k, v := range m {
			k = withoutCause(k)
			switch {
			case k == "switchyard_session_moves_started_total":
				r.Started += v
			case strings.HasPrefix(k, `switchyard_session_moves_total{result="`):
				r.Results[strings.TrimSuffix(strings.TrimPrefix(k, `switchyard_session_moves_total{result="`), `"}`)] += v
			case k == "switchyard_sessions_moving":
				r.Moving += v
			case k == moveHist+"_sum":
				r.DurSum += v
			case k == moveHist+"_count":
				r.DurCount += v
			case strings.HasPrefix(k, moveHist+`_bucket{le="`):
				le, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(k, moveHist+`_bucket{le="`), `"}`), 64)
				if err == nil {
					r.Buckets[le] += v
				}
			case k == `switchyard_frames_dropped_total{reason="move"}`:
				r.DroppedMove += v
			case strings.HasPrefix(k, "switchyard_disconnects_total"):
				r.Disconnects += v
			}
		}
	}
	return r
}

// withoutCause drops the cause label of the move series (summed over
// causes here): name{cause="x"} → name, name{cause="x",le="y"} →
// name{le="y"}.
func withoutCause(k string) string {
	i := strings.Index(k, `{cause="`)
	if i < 0 {
		return k
	}
	j := strings.IndexByte(k[i+8:], '"')
	if j < 0 {
		return k
	}
	rest := k[i+8+j+1:]
	if rest == "}" {
		return k[:i]
	}
	return k[:i] + "{" + strings.TrimPrefix(rest, ",")
}

// ended is the moves that ended, whatever their result.
func (r *moveReading) ended() float64 {
	var n float64
	for _, v := range r.Results {
		n += v
	}
	return n
}

// settled: moves happened since base, every one has ended, none is
// running, every gateway answered and has ring shards on its ring.
func (r *moveReading) settled(base moveReading, ring int) bool {
	return r.Started > base.Started && r.ended() == r.Started && r.Moving == 0 &&
		r.Scraped == base.Scraped && r.RingMin == ring && r.RingMax == ring
}

// delta fills ev's counters with what changed from base to r.
func (r *moveReading) delta(base moveReading, ev *moveEvent) {
	ev.MovesStarted = r.Started - base.Started
	ev.Moves = map[string]float64{}
	for k, v := range r.Results {
		if d := v - base.Results[k]; d != 0 {
			ev.Moves[k] = d
		}
	}
	if n := r.DurCount - base.DurCount; n > 0 {
		ev.MoveMeanS = (r.DurSum - base.DurSum) / n
	}
	d := map[float64]float64{}
	for le, v := range r.Buckets {
		d[le] = v - base.Buckets[le]
	}
	ev.MoveP50S, ev.MoveP99S, ev.MoveMaxS = bucketQuantile(d, 0.5), bucketQuantile(d, 0.99), bucketQuantile(d, 1)
	ev.DroppedMove = r.DroppedMove - base.DroppedMove
	ev.Disconnects = r.Disconnects - base.Disconnects
}

// bucketQuantile is the upper bound of the bucket that holds quantile q
// of a cumulative histogram (le → count); 0 when it is empty.
func bucketQuantile(b map[float64]float64, q float64) float64 {
	les := make([]float64, 0, len(b))
	for le := range b {
		les = append(les, le)
	}
	slices.Sort(les)
	if len(les) == 0 || b[les[len(les)-1]] <= 0 {
		return 0
	}
	total := b[les[len(les)-1]]
	for _, le := range les {
		if b[le] >= q*total {
			return le
		}
	}
	return les[len(les)-1]
}

// progress is one of loadgen's progress lines.
type progress struct {
	T        float64 // seconds since loadgen started
	P50, P99 time.Duration
	Moved    int64
	Errors   int64 // errors + disconnects + reconnects
}

// parseProgress reads loadgen's progress lines:
//
//	loadgen: t=  12s up=10000/10000 sent/s=50012 recv/s=50003 p50=1.2ms p99=3.4ms errors=0 disc=0 reconn=0 moved=0
func parseProgress(r io.Reader) []progress {
	var out []progress
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "loadgen: t=")
		if !ok {
			continue
		}
		var p progress
		var err error
		t, rest, _ := strings.Cut(strings.TrimSpace(line), "s ")
		if p.T, err = strconv.ParseFloat(t, 64); err != nil {
			continue
		}
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "p50":
				p.P50, _ = time.ParseDuration(v)
			case "p99":
				p.P99, _ = time.ParseDuration(v)
			case "moved":
				p.Moved, _ = strconv.ParseInt(v, 10, 64)
			case "errors", "disc", "reconn":
				n, _ := strconv.ParseInt(v, 10, 64)
				p.Errors += n
			}
		}
		out = append(out, p)
	}
	return out
}

// latency fills ev's latency figures from loadgen's progress lines: the
// baseline is the median of the latencyBefore seconds before the event,
// "during" the worst second from the event until a second after it
// settled. Each line covers the second before its t.
func (ev *moveEvent) latency(ps []progress) {
	var p50s, p99s []time.Duration
	var d50, d99 time.Duration
	end := ev.AtS + ev.SettledS + 1
	for _, p := range ps {
		switch {
		case p.T <= ev.AtS && p.T > ev.AtS-latencyBefore:
			p50s, p99s = append(p50s, p.P50), append(p99s, p.P99)
		case p.T > ev.AtS && p.T-1 < end:
			d50, d99 = max(d50, p.P50), max(d99, p.P99)
			ev.DeviceMoves += p.Moved
			ev.DeviceErrors += p.Errors
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	ev.P50BeforeMS, ev.P99BeforeMS = ms(median(p50s)), ms(median(p99s))
	ev.P50DuringMS, ev.P99DuringMS = ms(d50), ms(d99)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// eventLatency reads loadgen.log for the latency around each event.
func (s *summary) eventLatency(dir string) {
	f, err := os.Open(filepath.Join(dir, "loadgen.log"))
	if err != nil {
		return
	}
	defer f.Close()
	ps := parseProgress(f)
	for i := range s.Events {
		s.Events[i].latency(ps)
	}
}

// eventVerdict is the events' part of the verdict.
func (s *summary) eventVerdict(c *config) []error {
	var errs []error
	for _, ev := range s.Events {
		switch {
		case ev.Unsettled:
			errs = append(errs, fmt.Errorf("%s of %s: moves not settled after %.1f s", ev.Kind, ev.Shard, ev.SettledS))
		case ev.SettledS > c.MoveTarget.Seconds():
			errs = append(errs, fmt.Errorf("%s of %s: moves settled after %.2f s, target %v", ev.Kind, ev.Shard, ev.SettledS, c.MoveTarget))
		}
		if ev.MovesStarted == 0 {
			errs = append(errs, fmt.Errorf("%s of %s: no session moved", ev.Kind, ev.Shard))
		}
		if n := ev.failed(); n > 0 {
			errs = append(errs, fmt.Errorf("%s of %s: %.0f moves failed %v", ev.Kind, ev.Shard, n, ev.Moves))
		}
		if ev.Kind == "drain" && ev.ShardExitS == 0 {
			errs = append(errs, fmt.Errorf("drain of %s: the shard did not exit", ev.Shard))
		}
	}
	if want := len(c.plan()) - c.gatewayEvents(); len(s.Events) < want {
		errs = append(errs, fmt.Errorf("%d of %d events ran", len(s.Events), want))
	}
	return errs
}

// eventText is the events' part of the human summary.
func (s *summary) eventText(b *strings.Builder) {
	for _, ev := range s.Events {
		fmt.Fprintf(b, "  %s of %s at t=%.1f s: first move after %.2f s, all settled after %.2f s", ev.Kind, ev.Shard, ev.AtS, ev.FirstMoveS, ev.SettledS)
		if ev.Kind == "drain" {
			fmt.Fprintf(b, ", shard exited after %.2f s", ev.ShardExitS)
		}
		fmt.Fprintf(b, "\n    moves %.0f started, results %v; per move mean %.0f ms, p50 ≤ %g s, p99 ≤ %g s, max ≤ %g s; dropped (move) %.0f; gateway disconnects %.0f\n",
			ev.MovesStarted, ev.Moves, ev.MoveMeanS*1e3, ev.MoveP50S, ev.MoveP99S, ev.MoveMaxS, ev.DroppedMove, ev.Disconnects)
		fmt.Fprintf(b, "    devices: %d saw a new shard, %d errors/disconnects; latency p50 %.1f → %.1f ms, p99 %.1f → %.1f ms (median second before → worst second during; added p99 %.1f ms)\n",
			ev.DeviceMoves, ev.DeviceErrors, ev.P50BeforeMS, ev.P50DuringMS, ev.P99BeforeMS, ev.P99DuringMS, ev.P99DuringMS-ev.P99BeforeMS)
	}
}
