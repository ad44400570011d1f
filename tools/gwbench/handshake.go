package main

import (
	"github.com/switchyard-gw/switchyard/internal/procstat"

	"context"
	"flag"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"
)

// handshakeConfig are the parameters of the handshake scenario.
type handshakeConfig struct {
	Workers  int           // concurrent connect+HELLO+close loops
	Duration time.Duration // measured time
	Warmup   time.Duration // unmeasured time before it
	Net      bool          // use Go's net package instead of raw system calls
	Reset    bool          // close with RST (SO_LINGER 0) instead of FIN
}

func (c *handshakeConfig) flags(fs *flag.FlagSet, prefix string) {
	fs.IntVar(&c.Workers, prefix+"workers", 64, "concurrent workers, each: connect, HELLO, wait WELCOME, close")
	fs.DurationVar(&c.Duration, prefix+"duration", 10*time.Second, "measured time")
	fs.DurationVar(&c.Warmup, prefix+"warmup", time.Second, "unmeasured warm-up before it")
	fs.BoolVar(&c.Reset, prefix+"reset", false, "close with RST (SO_LINGER 0): no FIN exchange, no TIME_WAIT (raw sockets only)")
	fs.BoolVar(&c.Net, prefix+"net", false, "dial with Go's net package (netpoller) instead of blocking raw sockets")
}

// hsLoad is the shared state of the handshake workers.
type hsLoad struct {
	echoLoad // frames counts completed handshakes here
	failures atomic.Int64
}

// runHandshake measures new sessions per second.
func runHandshake(ctx context.Context, t target, o common, c handshakeConfig) (*Result, error) {
	r := newResult("handshake", t)
	c.Net = c.Net || o.tls // raw sockets speak no TLS
	r.Params = map[string]any{"workers": c.Workers, "duration_s": c.Duration.Seconds(), "tls": o.tls,
		"warmup_s": c.Warmup.Seconds(), "src_spread": o.spread.n, "go_net": c.Net, "reset": c.Reset}
	dst, err := sockaddr(t.addr)
	if err != nil {
		return nil, err
	}
	l := &hsLoad{}
	hists := make([]*hdrhistogram.Histogram, c.Workers)
	var wg sync.WaitGroup
	prefix := "gwb-hs-" + strconv.Itoa(os.Getpid()) + "-"
	for w := range c.Workers {
		hists[w] = hdrhistogram.New(histMin, histMax, histDigits)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Net {
				l.worker(ctx, t, o, w, c.Workers, prefix+strconv.Itoa(w)+"-", hists[w])
			} else {
				l.rawWorker(dst, o, c.Reset, w, c.Workers, prefix+strconv.Itoa(w)+"-", hists[w])
			}
		}()
	}
	time.Sleep(c.Warmup)
	m0, err := snapshot(t.pid, &l.echoLoad)
	f0 := l.failures.Load()
	if err == nil {
		l.measuring.Store(true)
		time.Sleep(c.Duration)
		l.measuring.Store(false)
	}
	m1, err2 := snapshot(t.pid, &l.echoLoad)
	l.stop.Store(true)
	wg.Wait()
	if err == nil {
		err = err2
	}
	if err != nil {
		return nil, err
	}
	all := hdrhistogram.New(histMin, histMax, histDigits)
	for _, h := range hists {
		all.Merge(h)
	}
	d := m1.sub(m0)
	d.report(r, procstat.ClockTicks(), "session")
	r.Results["sessions_per_sec"] = float64(d.units) / d.wall.Seconds()
	r.Results["failures"] = float64(l.failures.Load() - f0)
	r.Results["latency_p50_us"] = float64(all.ValueAtQuantile(50)) / 1e3
	r.Results["latency_p99_us"] = float64(all.ValueAtQuantile(99)) / 1e3
	r.Notes = append(r.Notes, l.errs...)
	return r, nil
}

// worker loops connect, HELLO, WELCOME, close until stopped. Worker w of n
// uses connection indices w, w+n, … so that source addresses rotate.
func (l *hsLoad) worker(ctx context.Context, t target, o common, w, n int, prefix string, h *hdrhistogram.Histogram) {
	var buf []byte
	for i := 0; !l.stop.Load(); i++ {
		start := time.Now()
		c, err := o.dial(ctx, w+i*n, t.addr)
		if err == nil {
			c.SetDeadline(start.Add(10 * time.Second))
			id := prefix + strconv.Itoa(i)
			err = handshake(c, &buf, id, o.auth.token(id))
			c.Close()
		}
		if err != nil {
			l.failures.Add(1)
			l.fail(err)
			time.Sleep(10 * time.Millisecond) // do not spin on a refusing target
			continue
		}
		l.frames.Add(1)
		if l.measuring.Load() {
			h.RecordValue(int64(time.Since(start)))
		}
	}
}

// rawWorker is worker with blocking raw sockets (see rawHandshake).
func (l *hsLoad) rawWorker(dst unix.SockaddrInet4, o common, reset bool, w, n int, prefix string, h *hdrhistogram.Histogram) {
	buf := make([]byte, 4096)
	var hello []byte
	for i := 0; !l.stop.Load(); i++ {
		start := time.Now()
		id := prefix + strconv.Itoa(i)
		hello = appendHello(hello[:0], id, o.auth.token(id))
		if err := rawHandshake(dst, o.spread.addr(w+i*n), hello, buf, 10*time.Second, reset); err != nil {
			l.failures.Add(1)
			l.fail(err)
			time.Sleep(10 * time.Millisecond) // do not spin on a refusing target
			continue
		}
		l.frames.Add(1)
		if l.measuring.Load() {
			h.RecordValue(int64(time.Since(start)))
		}
	}
}
