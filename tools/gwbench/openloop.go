package main

import (
	"github.com/switchyard-gw/switchyard/internal/procstat"

	"bufio"
	"context"
	"encoding/binary"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/switchyard-gw/switchyard/protocol"
)

// The open-loop mode of the cpu scenario (--rate N > 0).
//
// Every connection sends on a fixed schedule of its own, whatever the
// server does: frame k of connection i is due at
//
//	start + (k + i/conns) · conns/N
//
// (the connections are spread evenly over one interval, so the total is N
// frames/s). A sender wakes up when its next frame is due and writes every
// frame due by then in one write; each frame carries its SCHEDULED send
// time, and its latency is taken from that time, not from the moment the
// driver got round to writing it. A driver that falls behind (a blocked
// write, a late timer, a busy CPU) therefore shows up in the latency instead
// of slowing the load down (no coordinated omission), and separately as send
// lag, late sends and missed sends.
//
// The measured window [t0, t1) is fixed before the first frame is sent. Only
// frames SCHEDULED inside it count for latency. After t1 the schedule goes
// on (the load does not drop) until every measured frame is echoed or
// --drain has passed; a measured frame not echoed by then is "unanswered"
// and enters the histogram with the time it had waited so far, a lower bound.

// schedule is the send times of one connection, in nanoseconds since the
// load's base time: frame k is due at start + (k + phase) · interval.
type schedule struct {
	start    int64   // ns since base
	interval float64 // ns between two frames of this connection
	phase    float64 // offset of frame 0, in intervals, [0, 1)
}

// newSchedule returns the schedule of connection i of n at rate frames/s
// in total.
func newSchedule(start int64, rate float64, i, n int) schedule {
	return schedule{start: start, interval: float64(n) * 1e9 / rate, phase: float64(i) / float64(n)}
}

// at is the due time of frame k.
func (s schedule) at(k int64) int64 {
	return s.start + int64(math.Round((float64(k)+s.phase)*s.interval))
}

// before is the number of frames due strictly before t (the index of the
// first frame due at or after t).
func (s schedule) before(t int64) int64 {
	k := int64(math.Ceil(float64(t-s.start)/s.interval - s.phase))
	if k < 0 {
		k = 0
	}
	// Rounding in at() may move a boundary by a nanosecond: settle on at().
	for k > 0 && s.at(k-1) >= t {
		k--
	}
	for s.at(k) < t {
		k++
	}
	return k
}

// window is the measured interval [t0, t1) in ns since base.
type window struct{ t0, t1 int64 }

func (w window) in(t int64) bool { return t >= w.t0 && t < w.t1 }

// openConn is the accounting of one connection. The sender goroutine owns
// lag and the send counters, the reader goroutine lat; echoed is read by
// the main goroutine while the load runs.
type openConn struct {
	sched     schedule
	w         window
	lateAfter int64 // a send this long (ns) after its due time is late

	lat *hdrhistogram.Histogram // echo time − due time, frames due in w
	lag *hdrhistogram.Histogram // send time − due time, frames due in w

	sent     int64 // frames written, all phases
	sentIn   int64 // frames written during w (achieved rate)
	late     int64 // frames due in w, written more than lateAfter after due
	missed   int64 // frames due in w, not written by t1
	maxLag   int64
	echoed   atomic.Int64 // echoes of frames due in w
	ordered  bool         // every echo so far came in send order
	nextEcho int64        // frame index the next echo should carry
}

func newOpenConn(s schedule, w window, lateAfter time.Duration) *openConn {
	return &openConn{sched: s, w: w, lateAfter: int64(lateAfter), ordered: true,
		lat: hdrhistogram.New(histMin, histMax, histDigits),
		lag: hdrhistogram.New(histMin, histMax, histDigits)}
}

// due returns how many frames from index next are due at now, at most max.
func (c *openConn) due(next, now int64, max int) int {
	n := c.sched.before(now+1) - next
	if n <= 0 {
		return 0
	}
	return int(min(n, int64(max)))
}

// onSend accounts for frame k, written at now.
func (c *openConn) onSend(k, now int64) {
	c.sent++
	if c.w.in(now) {
		c.sentIn++
	}
	due := c.sched.at(k)
	if !c.w.in(due) {
		return
	}
	lag := now - due
	c.lag.RecordValue(max(lag, histMin))
	c.maxLag = max(c.maxLag, lag)
	if lag > c.lateAfter {
		c.late++
	}
	if now >= c.w.t1 {
		c.missed++
	}
}

// onEcho accounts for the echo of the frame due at due, received at now.
func (c *openConn) onEcho(due, now int64) {
	if c.ordered {
		if due != c.sched.at(c.nextEcho) {
			c.ordered = false // a frame was dropped: unanswered is approximate
		}
		c.nextEcho++
	}
	if !c.w.in(due) {
		return
	}
	c.lat.RecordValue(max(now-due, histMin))
	c.echoed.Add(1)
}

// expected is the number of frames due in the window.
func (c *openConn) expected() int64 {
	return c.sched.before(c.w.t1) - c.sched.before(c.w.t0)
}

// finish records every measured frame not echoed by end (ns since base)
// with the time it had waited, and returns their number. Echoes come in
// send order, so the missing ones are the last of the window.
func (c *openConn) finish(end int64) int64 {
	first := c.sched.before(c.w.t0) + c.echoed.Load()
	last := c.sched.before(c.w.t1)
	for k := first; k < last; k++ {
		c.lat.RecordValue(max(end-c.sched.at(k), histMin))
	}
	return max(last-first, 0)
}

// openLoad is the shared state of an open-loop run.
type openLoad struct {
	*echoLoad
	conns []*openConn
}

// maxOpenBatch bounds the frames a sender writes at once after falling
// behind.
const maxOpenBatch = 256

// send writes the connection's frames on schedule until stop: whenever
// one is due, every frame due by then in one write, but at most one write
// per tick (frames due meanwhile wait, and their wait counts as latency).
func (l *openLoad) send(conn net.Conn, c *openConn, payload int, tick time.Duration) {
	out := make([]byte, 0, 16*protocol.FrameSize(payload))
	p := make([]byte, payload)
	var next, wake int64
	for !l.stop.Load() {
		now := int64(time.Since(l.base))
		n := c.due(next, now, maxOpenBatch)
		if n == 0 || now < wake {
			time.Sleep(time.Duration(max(c.sched.at(next), wake) - now))
			continue
		}
		wake = now + int64(tick)
		out = out[:0]
		for j := range int64(n) {
			binary.BigEndian.PutUint64(p, uint64(c.sched.at(next+j)))
			out = protocol.AppendFrame(out, protocol.TypeData, 0, 0, p)
		}
		if _, err := conn.Write(out); err != nil {
			if !l.stop.Load() {
				l.fail(err)
			}
			return
		}
		for j := range int64(n) {
			c.onSend(next+j, now)
		}
		next += int64(n)
	}
}

// receive reads echoes until the connection is closed.
func (l *openLoad) receive(conn net.Conn, c *openConn) {
	r := bufio.NewReaderSize(conn, 64*1024)
	var buf []byte
	got := 0
	for {
		f, err := readFrame(r, &buf)
		if err != nil {
			if !l.stop.Load() {
				l.fail(err)
			}
			return
		}
		switch f.Type {
		case protocol.TypeData:
			got++
			if len(f.Payload) >= 8 {
				c.onEcho(int64(binary.BigEndian.Uint64(f.Payload)), int64(time.Since(l.base)))
			}
		case protocol.TypeError:
			if code := errorCode(f.Payload); code != protocol.CodeRateLimited {
				if !l.stop.Load() {
					l.fail(&serverError{code})
				}
				return
			}
			l.limited.Add(1)
		}
		if r.Buffered() < protocol.HeaderSize {
			l.frames.Add(int64(got))
			got = 0
		}
	}
}

// runOpen is runCPU with --rate > 0.
func runOpen(ctx context.Context, t target, o common, c cpuConfig, r *Result) (*Result, error) {
	r.Params["mode"] = "open"
	r.Params["rate"] = c.Rate
	r.Params["late_after_ms"] = float64(c.LateAfter) / 1e6
	r.Params["drain_s"] = c.Drain.Seconds()
	r.Params["tick_ms"] = float64(c.Tick) / 1e6
	conns, err := openEchoConns(ctx, t, o, c.Conns)
	if err != nil {
		return nil, err
	}
	fl := startFlood(ctx, t, o, c.Flooders, c.FloodRetry)
	defer fl.end(r)
	l := &openLoad{echoLoad: &echoLoad{base: time.Now()}}
	// A little slack for the goroutines to start before the first frame.
	start := int64(50 * time.Millisecond)
	w := window{t0: start + int64(c.Warmup), t1: start + int64(c.Warmup+c.Duration)}
	for i := range conns {
		l.conns = append(l.conns, newOpenConn(newSchedule(start, c.Rate, i, len(conns)), w, c.LateAfter))
	}
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Add(2)
		go func() { defer wg.Done(); l.send(conn, l.conns[i], c.Payload, c.Tick) }()
		go func() { defer wg.Done(); l.receive(conn, l.conns[i]) }()
	}
	sleepUntil := func(ns int64) { time.Sleep(time.Until(l.base.Add(time.Duration(ns)))) }
	sleepUntil(w.t0)
	m0, err0 := snapshot(t.pid, l.echoLoad)
	sleepUntil(w.t1)
	m1, err1 := snapshot(t.pid, l.echoLoad)
	// Drain: the schedule goes on until every measured frame is echoed.
	var expected int64
	for _, oc := range l.conns {
		expected += oc.expected()
	}
	for deadline := time.Now().Add(c.Drain); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var echoed int64
		for _, oc := range l.conns {
			echoed += oc.echoed.Load()
		}
		if echoed >= expected || l.failed.Load() > 0 {
			break
		}
	}
	end := int64(time.Since(l.base))
	l.stop.Store(true)
	for _, conn := range conns {
		conn.Close()
	}
	wg.Wait()
	if err0 != nil {
		return nil, err0
	}
	if err1 != nil {
		return nil, err1
	}
	d := m1.sub(m0)
	d.report(r, procstat.ClockTicks(), "frame")
	s := summarizeOpen(l.conns, end)
	r.Results["frames_per_sec"] = float64(d.units) / d.wall.Seconds()
	r.Results["target_rate"] = c.Rate
	r.Results["achieved_rate"] = float64(s.sentIn) / c.Duration.Seconds()
	r.Results["scheduled"] = float64(s.expected)
	r.Results["late_sends"] = float64(s.late)
	r.Results["missed_sends"] = float64(s.missed)
	r.Results["unanswered"] = float64(s.unanswered)
	r.Results["send_lag_p50_us"] = float64(s.lag.ValueAtQuantile(50)) / 1e3
	r.Results["send_lag_p99_us"] = float64(s.lag.ValueAtQuantile(99)) / 1e3
	r.Results["send_lag_max_us"] = float64(s.maxLag) / 1e3
	for _, q := range []struct {
		key string
		q   float64
	}{{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p999", 99.9}} {
		r.Results["latency_"+q.key+"_us"] = float64(s.lat.ValueAtQuantile(q.q)) / 1e3
	}
	r.Results["latency_max_us"] = float64(s.lat.Max()) / 1e3
	r.Results["latency_samples"] = float64(s.lat.TotalCount())
	r.Results["conn_failures"] = float64(l.failed.Load())
	r.Results["rate_limited"] = float64(l.limited.Load())
	if !s.ordered {
		r.Notes = append(r.Notes, "echoes out of send order (frames dropped?): unanswered is approximate")
	}
	r.Notes = append(r.Notes, l.errs...)
	return r, nil
}

// openSummary merges the accounting of every connection.
type openSummary struct {
	lat, lag                                           *hdrhistogram.Histogram
	expected, sentIn, late, missed, unanswered, maxLag int64
	ordered                                            bool
}

// summarizeOpen merges the connections' accounting after the load has
// stopped; end is when it stopped (ns since base).
func summarizeOpen(cs []*openConn, end int64) openSummary {
	s := openSummary{lat: hdrhistogram.New(histMin, histMax, histDigits),
		lag: hdrhistogram.New(histMin, histMax, histDigits), ordered: true}
	for _, c := range cs {
		s.unanswered += c.finish(end)
		s.lat.Merge(c.lat)
		s.lag.Merge(c.lag)
		s.expected += c.expected()
		s.sentIn += c.sentIn
		s.late += c.late
		s.missed += c.missed
		s.maxLag = max(s.maxLag, c.maxLag)
		s.ordered = s.ordered && c.ordered
	}
	return s
}
