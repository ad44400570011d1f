package server

import (
	"bytes"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// floodChunk is one write of a flooding device: PONG frames (42 bytes,
// no reply, so the flood is input only).
func floodChunk(size int) []byte {
	var b []byte
	for len(b) < size {
		b = protocol.AppendFrame(b, protocol.TypePong, 0, 0, bytes.Repeat([]byte{'x'}, 32))
	}
	return b
}

// TestUnreadInputBounded: devices that write without end get ERROR 413
// and are closed once their unread input passes MaxUnread, counted; a
// quiet device on the same gateway keeps echoing; and the gateway's heap
// grows by no more than the flooders' bounds and netpoll's overfill.
func TestUnreadInputBounded(t *testing.T) {
	const flooders = 4
	// No rate limit: only the unread bound can stop these devices. No
	// abuse penalty: they all come from 127.0.0.1, and the first three
	// closed would get the fourth refused (TestFloodPenalty).
	g := startGateway(t, Config{Rate: -1, MaxFrame: 4096, AbusePenalty: -1})
	bound := g.maxUnread
	if want := 16 * (4096 + protocol.HeaderSize); bound != want {
		t.Fatalf("default MaxUnread %d, want %d", bound, want)
	}
	quiet := dial(t, g)
	quiet.hello(protocol.Hello{ID: "quiet"})
	echo := func(i int) {
		t.Helper()
		p := []byte{byte(i)}
		quiet.send(protocol.TypeData, 0, 0, p)
		if f := quiet.read(); f.Type != protocol.TypeData || !bytes.Equal(f.Payload, p) {
			t.Fatalf("quiet device: %v %q", f.Type, f.Payload)
		}
	}
	echo(0)

	var base runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the heap's high-water mark during the flood
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	chunk := floodChunk(256 << 10)
	devs := make([]*dev, flooders)
	for i := range devs {
		d := dial(t, g)
		d.hello(protocol.Hello{ID: "flooder-" + string(rune('a'+i))})
		devs[i] = d
		wg.Add(1)
		go func() { // writes until the gateway closes it
			defer wg.Done()
			for {
				if _, err := d.nc.Write(chunk); err != nil {
					return
				}
			}
		}()
	}
	deadline := time.Now().Add(poll.Patience)
	for i := 1; metric(g, `switchyard_disconnects_total{reason="unread_limit"}`) < flooders; i++ {
		echo(i) // the quiet device is served throughout
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("flooders not closed for unread input (heap %d KB over the start)", (peak.Load()-min(peak.Load(), base.HeapAlloc))>>10)
		}
	}
	for _, d := range devs {
		d.expectError(protocol.CodeTooLarge, true)
	}
	close(stop)
	wg.Wait()
	echo(1)
	if n := metric(g, `switchyard_errors_sent_total{code="413"}`); n != flooders {
		t.Fatalf("errors_sent_total{code=413} %v, want %d", n, flooders)
	}
	// netpoll reads up to 8 MB at a time (its mallocMax) while a handler
	// works: that, not MaxUnread, is the most one flooder can cost.
	const overfill = 8 << 20
	limit := uint64(flooders*(bound+overfill)) + 16<<20
	grew := peak.Load() - min(peak.Load(), base.HeapAlloc)
	t.Logf("heap grew %d KB at most during the flood of %d devices (bound %d B each, limit %d KB)", grew>>10, flooders, bound, limit>>10)
	if grew > limit {
		t.Fatalf("heap grew %d bytes during the flood, want under %d", grew, limit)
	}
}

// TestRateFloodClosedAtOnce: a device that writes frames without end far
// over its rate (more than floodDrops dropped in one batch of input) is
// closed with 429 at once, not after RateExcessClose, and counted.
func TestRateFloodClosedAtOnce(t *testing.T) {
	g := startGateway(t, Config{RateBurst: 100, Rate: 100, RateExcessClose: time.Hour, MaxUnread: 64 << 20})
	d := dial(t, g)
	d.hello(protocol.Hello{ID: "fast"})
	var chunk []byte
	for len(chunk) < 64<<10 {
		chunk = protocol.AppendFrame(chunk, protocol.TypeData, 0, 0, []byte("x"))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // writes until closed; the test reads meanwhile
		defer wg.Done()
		for {
			if _, err := d.nc.Write(chunk); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(poll.Patience)
	for { // 429 notices (connection kept), then the closing one
		if time.Now().After(deadline) {
			t.Fatal("the flooding device was not closed")
		}
		f := d.read()
		if f.Type != protocol.TypeError {
			continue
		}
		var e protocol.ErrorMsg
		if err := protocol.Unmarshal(f.Payload, &e); err != nil || e.Code != protocol.CodeRateLimited {
			t.Fatalf("ERROR %+v %v, want 429", e, err)
		}
		if strings.Contains(e.Message, "closing") {
			break
		}
	}
	d.expectClosed()
	d.nc.Close()
	wg.Wait()
	waitFor(t, "rate_flood counted", func() bool {
		return metric(g, `switchyard_disconnects_total{reason="rate_flood"}`) == 1
	})
}

// TestSlowConsumerGetsError: a device that does not read its echoes is a
// slow consumer; the last frame it is sent is ERROR 503, after everything
// queued, then the end of the stream, and it is counted. The device never
// stops writing: a gateway that closed while input of it waited unread
// would reset the connection, and the reset destroys what the device has
// not read yet, the ERROR included (lingerClose). CloseLinger is long so
// that a busy box's pauses cannot end the linger first.
func TestSlowConsumerGetsError(t *testing.T) {
	g := startGateway(t, Config{MaxOutbound: 128 << 10, Rate: -1, MaxUnread: 64 << 20, CloseLinger: poll.Patience}) // the unread bound would otherwise close it first (413)
	d := dial(t, g)
	d.hello(protocol.Hello{ID: "slow"})
	frame := protocol.AppendFrame(nil, protocol.TypeData, 0, 0, make([]byte, 32<<10))
	ping := protocol.AppendFrame(nil, protocol.TypePing, 0, 0, nil)
	queued := func() bool { return metric(g, `switchyard_errors_sent_total{code="503"}`) == 1 }
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Echoes until the gateway gives up on this device: at most 62.5
		// MiB, under MaxUnread however far the gateway falls behind; then
		// PINGs, so that input keeps arriving while the gateway closes.
		for range 2000 {
			if queued() {
				break
			}
			if _, err := d.nc.Write(frame); err != nil {
				return
			}
		}
		for {
			if _, err := d.nc.Write(ping); err != nil {
				return // closed below
			}
		}
	}()
	// The gateway queued its ERROR behind what the socket would not take;
	// reading now takes all of it, ERROR last, then the end of the stream.
	waitFor(t, "ERROR 503 queued", queued)
	for {
		f := d.read()
		if f.Type == protocol.TypeData {
			continue
		}
		if f.Type != protocol.TypeError {
			t.Fatalf("got %v, want DATA then ERROR", f.Type)
		}
		var e protocol.ErrorMsg
		if err := protocol.Unmarshal(f.Payload, &e); err != nil || e.Code != protocol.CodeUnavailable {
			t.Fatalf("ERROR %+v %v, want 503", e, err)
		}
		break
	}
	if _, err := d.tryRead(poll.Patience); err != io.EOF {
		t.Fatalf("after the ERROR: %v, want the end of the stream", err)
	}
	d.nc.Close()
	<-done
	waitFor(t, "slow consumer disconnect", func() bool { return g.metrics.disconnects[reasonSlowConsumer].Get() == 1 })
}

// TestDetachedCapped: connect/HELLO/close churn with fresh device ids past
// MaxDetached never holds more detached sessions than the cap; the oldest
// are forgotten first and counted, a forgotten session's resume starts a
// new session, and the newest still resume.
func TestDetachedCapped(t *testing.T) {
	const capN, churn = 8, 30
	g := startGateway(t, Config{MaxDetached: capN})
	tokens := make([][]byte, churn)
	id := func(i int) string { return "churn-" + strconv.Itoa(i) }
	for i := range churn {
		d := dial(t, g)
		tokens[i] = d.hello(protocol.Hello{ID: id(i)}).Resume
		d.nc.Close()
		want := min(i+1, capN)
		waitFor(t, "detach "+id(i), func() bool { return g.sessions.detached() == want && g.metrics.attached.Load() == 0 })
		if n := int(metric(g, `switchyard_sessions_by_state{state="detached"}`)); n != want {
			t.Fatalf("after %d closes: %d detached, want %d", i+1, n, want)
		}
	}
	if n := metric(g, "switchyard_detached_evicted_total"); n != churn-capN {
		t.Fatalf("detached_evicted_total %v, want %d", n, churn-capN)
	}
	if n := metric(g, "switchyard_sessions"); n != capN {
		t.Fatalf("sessions %v, want %d", n, capN)
	}
	resume := func(i int) bool {
		d := dial(t, g)
		defer d.nc.Close()
		return d.hello(protocol.Hello{ID: id(i), Resume: tokens[i]}).Resumed
	}
	if resume(0) {
		t.Fatal("the oldest detached session (evicted) resumed")
	}
	if !resume(churn - 1) {
		t.Fatal("the newest detached session did not resume")
	}
}
