package main

import (
	"github.com/switchyard-gw/switchyard/internal/procstat"

	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/switchyard-gw/switchyard/protocol"
)

// cpuConfig are the parameters of the cpu scenario.
type cpuConfig struct {
	Conns    int           // connections
	Window   int           // DATA frames in flight per connection
	Payload  int           // DATA payload size, at least 8 (send timestamp)
	Duration time.Duration // measured time
	Warmup   time.Duration // unmeasured time before it

	// Open loop (Rate > 0): frames on a schedule instead of a window.
	Rate      float64       // frames/s over all connections; 0: closed loop
	LateAfter time.Duration // a send this long after its due time is late
	Drain     time.Duration // longest wait for the measured frames' echoes
	Tick      time.Duration // at most one write per connection per Tick

	Flooders int // devices flooding DATA without reading beside the measured ones (flood.go)
	// FloodRetry is how long a flooder waits after a refused connection
	// before it dials again; 0 is an attacker that never waits.
	FloodRetry time.Duration
}

func (c *cpuConfig) flags(fs *flag.FlagSet, prefix string) {
	fs.IntVar(&c.Conns, prefix+"conns", 100, "connections")
	fs.IntVar(&c.Window, prefix+"window", 16, "best-effort DATA frames in flight per connection")
	fs.IntVar(&c.Payload, prefix+"payload", 64, "DATA payload bytes (>= 8: the send time rides in it)")
	fs.DurationVar(&c.Duration, prefix+"duration", 10*time.Second, "measured time")
	fs.DurationVar(&c.Warmup, prefix+"warmup", 2*time.Second, "unmeasured warm-up before it")
	fs.Float64Var(&c.Rate, prefix+"rate", 0, "open loop: total DATA frames/s over all connections, each connection on a fixed schedule; latency from the scheduled send time ("+prefix+"window is then unused). 0: closed loop")
	fs.DurationVar(&c.LateAfter, prefix+"late-after", 2*time.Millisecond, "open loop: a frame written this long after its scheduled time counts as a late send")
	fs.DurationVar(&c.Tick, prefix+"rate-tick", 0, "open loop: at most one write per connection per tick; frames due meanwhile go out together at the next (their wait counts as latency). 0: a write as soon as a frame is due (Go's timers then wake about 1 ms late when the driver is idle)")
	fs.DurationVar(&c.Drain, prefix+"drain", 2*time.Second, "open loop: after the window, how long to wait for the echoes of its frames")
	fs.IntVar(&c.Flooders, prefix+"flooders", 0, "devices that flood 42-byte DATA without reading (reconnecting when closed) during the whole run, beside the measured connections")
	fs.DurationVar(&c.FloodRetry, prefix+"flood-retry", 10*time.Millisecond, "how long a flooder waits after a refused connection before it dials again (0: at once, an attacker's hot loop)")
}

// Histogram range in nanoseconds: 1 µs … 10 s at 3 significant digits.
const (
	histMin, histMax, histDigits = 1000, 10_000_000_000, 3
)

// echoLoad is the shared state of the cpu scenario's connections.
type echoLoad struct {
	frames    atomic.Int64 // echoes received, all phases
	measuring atomic.Bool  // latencies are recorded only while set
	stop      atomic.Bool
	base      time.Time // send times are nanoseconds since base
	errMu     sync.Mutex
	errs      []string
	failed    atomic.Int64
	limited   atomic.Int64 // ERROR 429 received: the frame was dropped
}

// runCPU drives pipelined best-effort echo and reports frames/s, server and
// client CPU per frame, and the latency of each echoed frame.
func runCPU(ctx context.Context, t target, o common, c cpuConfig) (*Result, error) {
	if c.Payload < 8 {
		return nil, errors.New("gwbench: cpu --payload must be at least 8")
	}
	r := newResult("cpu", t)
	r.Params = map[string]any{"tls": o.tls, "conns": c.Conns, "window": c.Window, "payload": c.Payload,
		"duration_s": c.Duration.Seconds(), "warmup_s": c.Warmup.Seconds(), "flooders": c.Flooders, "flood_retry_ms": c.FloodRetry.Milliseconds()}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return nil, errors.New("gwbench: cpu --rate must be a finite number >= 0")
	}
	if c.Rate > 0 {
		delete(r.Params, "window")
		return runOpen(ctx, t, o, c, r)
	}
	r.Params["mode"] = "closed"
	l := &echoLoad{base: time.Now()}
	conns, err := openEchoConns(ctx, t, o, c.Conns)
	if err != nil {
		return nil, err
	}
	fl := startFlood(ctx, t, o, c.Flooders, c.FloodRetry)
	defer fl.end(r)
	hists := make([]*hdrhistogram.Histogram, len(conns))
	var wg sync.WaitGroup
	for i, conn := range conns {
		hists[i] = hdrhistogram.New(histMin, histMax, histDigits)
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run(conn, c, hists[i])
		}()
	}
	time.Sleep(c.Warmup)
	m0, err := snapshot(t.pid, l)
	if err != nil {
		return nil, err
	}
	l.measuring.Store(true)
	time.Sleep(c.Duration)
	l.measuring.Store(false)
	m1, err := snapshot(t.pid, l)
	l.stop.Store(true)
	for _, conn := range conns {
		conn.Close()
	}
	wg.Wait()
	if err != nil {
		return nil, err
	}
	all := hdrhistogram.New(histMin, histMax, histDigits)
	for _, h := range hists {
		all.Merge(h)
	}
	d := m1.sub(m0)
	if d.units == 0 {
		// Per-frame figures of a run that echoed nothing would be zeros
		// in the medians: the run failed.
		return nil, fmt.Errorf("gwbench: no frame echoed in the %v measured; the target stalled (%.1f s of its CPU meanwhile)",
			c.Duration, float64(d.server.Total())/float64(procstat.ClockTicks()))
	}
	d.report(r, procstat.ClockTicks(), "frame")
	r.Results["frames_per_sec"] = float64(d.units) / d.wall.Seconds()
	r.Results["latency_p50_us"] = float64(all.ValueAtQuantile(50)) / 1e3
	r.Results["latency_p90_us"] = float64(all.ValueAtQuantile(90)) / 1e3
	r.Results["latency_p99_us"] = float64(all.ValueAtQuantile(99)) / 1e3
	r.Results["latency_p999_us"] = float64(all.ValueAtQuantile(99.9)) / 1e3
	r.Results["latency_max_us"] = float64(all.Max()) / 1e3
	r.Results["conn_failures"] = float64(l.failed.Load())
	r.Results["rate_limited"] = float64(l.limited.Load())
	r.Notes = append(r.Notes, l.errs...)
	return r, nil
}

// sample is a point-in-time reading of the work done and the CPU used.
type sample struct {
	at     time.Time
	wall   time.Duration     // set by sub
	units  int64             // frames or sessions
	server procstat.CPUTicks // target's CPU time
	kids   procstat.CPUTicks // CPU time of the target's procstat.Descendants (backend shards)
	nkids  int               // their number (at the later reading, after sub)
	client procstat.CPUTicks // this process's CPU time
	host   int64             // busy ticks of the whole machine, all CPUs
	steal  int64             // ticks the machine's CPUs waited for the hypervisor
}

func snapshot(pid int, l *echoLoad) (sample, error) {
	s := sample{at: time.Now(), units: l.frames.Load()}
	var err error
	if s.server, err = procstat.CPU(pid); err != nil {
		return s, err
	}
	if s.client, err = procstat.CPU(os.Getpid()); err != nil {
		return s, err
	}
	if s.kids, s.nkids, err = procstat.DescendantsCPU(pid); err != nil {
		return s, err
	}
	s.host, s.steal, err = procstat.HostCPU()
	return s, err
}

// sub returns the difference s - o.
func (s sample) sub(o sample) sample {
	return sample{at: s.at, wall: s.at.Sub(o.at), units: s.units - o.units,
		server: procstat.CPUTicks{User: s.server.User - o.server.User, Sys: s.server.Sys - o.server.Sys},
		client: procstat.CPUTicks{User: s.client.User - o.client.User, Sys: s.client.Sys - o.client.Sys},
		kids:   procstat.CPUTicks{User: s.kids.User - o.kids.User, Sys: s.kids.Sys - o.kids.Sys}, nkids: s.nkids,
		host: s.host - o.host, steal: s.steal - o.steal}
}

// report writes a measured difference into r.
func (s sample) report(r *Result, hz int64, unit string) {
	r.Results[unit+"s"] = float64(s.units)
	r.Results["wall_s"] = s.wall.Seconds()
	secs := func(t int64) float64 { return float64(t) / float64(hz) }
	r.Results["clock_ticks_per_s"] = float64(hz)
	r.Results["server_cpu_s"] = secs(s.server.Total())
	r.Results["server_user_s"] = secs(s.server.User)
	r.Results["server_sys_s"] = secs(s.server.Sys)
	r.Results["client_cpu_s"] = secs(s.client.Total())
	r.Results["client_user_s"] = secs(s.client.User)
	r.Results["client_sys_s"] = secs(s.client.Sys)
	r.Results["server_cores"] = secs(s.server.Total()) / s.wall.Seconds()
	r.Results["client_cores"] = secs(s.client.Total()) / s.wall.Seconds()
	// Everything else that ran meanwhile (other processes, and kernel work
	// not charged to either process): a noisy box shows here.
	r.Results["host_busy_cores"] = secs(s.host) / s.wall.Seconds()
	r.Results["other_cores"] = secs(s.host-s.server.Total()-s.client.Total()-s.kids.Total()) / s.wall.Seconds()
	r.Results["steal_cores"] = secs(s.steal) / s.wall.Seconds()
	r.Results["server_us_per_"+unit] = perUnitMicros(s.server.Total(), hz, s.units)
	if s.nkids > 0 {
		// The target's own processes (a cluster target's backend shards);
		// server_* above is the measured PID alone.
		r.Results["children"] = float64(s.nkids)
		r.Results["children_cpu_s"] = secs(s.kids.Total())
		r.Results["children_user_s"] = secs(s.kids.User)
		r.Results["children_sys_s"] = secs(s.kids.Sys)
		r.Results["children_cores"] = secs(s.kids.Total()) / s.wall.Seconds()
		r.Results["children_us_per_"+unit] = perUnitMicros(s.kids.Total(), hz, s.units)
	}
	r.Results["client_us_per_"+unit] = perUnitMicros(s.client.Total(), hz, s.units)
}

func openEchoConns(ctx context.Context, t target, o common, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, 0, n)
	var buf []byte
	prefix := "gwb-cpu-" + strconv.Itoa(os.Getpid()) + "-"
	for i := 0; i < n; i++ {
		c, err := o.dial(ctx, i, t.addr)
		if err == nil {
			id := prefix + strconv.Itoa(i)
			if err = handshake(c, &buf, id, o.auth.token(id)); err != nil {
				c.Close()
			}
		}
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, fmt.Errorf("gwbench: open connection %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

// run keeps c.Window frames in flight on one connection: it reads every
// complete frame buffered, then sends as many new frames in one write.
func (l *echoLoad) run(conn net.Conn, c cpuConfig, h *hdrhistogram.Histogram) {
	r := bufio.NewReaderSize(conn, 64*1024)
	out := make([]byte, 0, c.Window*protocol.FrameSize(c.Payload))
	payload := make([]byte, c.Payload)
	send := func(k int) error {
		out = out[:0]
		now := uint64(time.Since(l.base))
		binary.BigEndian.PutUint64(payload, now)
		for j := 0; j < k; j++ {
			out = protocol.AppendFrame(out, protocol.TypeData, 0, 0, payload)
		}
		_, err := conn.Write(out)
		return err
	}
	err := send(c.Window)
	var buf []byte
	for err == nil {
		var got int
		got, err = l.drain(r, &buf, h)
		if err == nil && got > 0 {
			err = send(got)
		}
	}
	if !l.stop.Load() {
		l.fail(err)
	}
}

// drain reads at least one frame, then every further frame already
// buffered; it returns the number of DATA echoes.
func (l *echoLoad) drain(r *bufio.Reader, buf *[]byte, h *hdrhistogram.Histogram) (int, error) {
	got := 0
	for {
		f, err := readFrame(r, buf)
		if err != nil {
			return got, err
		}
		switch f.Type {
		case protocol.TypeData:
			got++
			if l.measuring.Load() && len(f.Payload) >= 8 {
				sent := time.Duration(binary.BigEndian.Uint64(f.Payload))
				h.RecordValue(int64(time.Since(l.base) - sent))
			}
		case protocol.TypeError:
			code := errorCode(f.Payload)
			if code != protocol.CodeRateLimited {
				return got, &serverError{code}
			}
			l.limited.Add(1)
			got++ // the frame was dropped: send a replacement, uncounted
			l.frames.Add(-1)
		}
		if r.Buffered() < protocol.HeaderSize {
			break
		}
	}
	l.frames.Add(int64(got))
	return got, nil
}

func (l *echoLoad) fail(err error) {
	l.failed.Add(1)
	l.errMu.Lock()
	if len(l.errs) < 5 {
		l.errs = append(l.errs, err.Error())
	}
	l.errMu.Unlock()
}
