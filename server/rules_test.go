package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"
)

func mustMP(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHandshakeRules covers every refusal of the handshake and frame layer.
func TestHandshakeRules(t *testing.T) {
	g := startGateway(t, Config{AuthSecrets: [][]byte{[]byte("k1"), []byte("k2")}})
	good := protocol.MakeToken([]byte("k2"), "d1", time.Now().Add(time.Hour))
	tags17 := map[string]string{}
	for i := range 17 {
		tags17[fmt.Sprint(i)] = "v"
	}
	tests := []struct {
		name string
		in   []byte
		code int
	}{
		{"first frame not HELLO", protocol.AppendFrame(nil, protocol.TypeData, 0, 0, []byte("x")), 400},
		{"PING before HELLO", protocol.AppendFrame(nil, protocol.TypePing, 0, 0, nil), 400},
		{"length below 6", rawHeader(5, protocol.TypeHello, 0, 0), 400},
		{"oversize, header only", rawHeader(6+65537, protocol.TypeHello, 0, 0), 413},
		{"oversize length field only", rawHeader(1<<31, protocol.TypeHello, 0, 0)[:4], 413},
		{"reserved flag", protocol.AppendFrame(nil, protocol.TypeHello, 0x04, 0, nil), 400},
		{"unknown type", protocol.AppendFrame(nil, 0x42, 0, 0, nil), 400},
		{"hello not a map", protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, mustMP(t, "x")), 400},
		{"hello v 2", protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, mustMP(t, map[string]any{"v": 2, "id": "d1", "token": good})), 400},
		{"hello bad id", protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, mustMP(t, map[string]any{"v": 1, "id": "d 1"})), 400},
		{"hello 17 tags", protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, mustMP(t, map[string]any{"v": 1, "id": "d1", "tags": tags17})), 400},
		{"hello over 4096", protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, mustMP(t, map[string]any{"v": 1, "id": "d1", "x": strings.Repeat("a", 5000)})), 413},
		{"no token", protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, mustMP(t, map[string]any{"v": 1, "id": "d1"})), 401},
		{"token of other id", protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, mustMP(t, map[string]any{"v": 1, "id": "d2", "token": good})), 401},
		{"expired token", protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, mustMP(t, map[string]any{"v": 1, "id": "d1",
			"token": protocol.MakeToken([]byte("k1"), "d1", time.Now().Add(-time.Minute))})), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dial(t, g)
			d.write(tt.in)
			d.expectError(tt.code, true)
		})
	}
	t.Run("good token, then second HELLO", func(t *testing.T) {
		d := dial(t, g)
		d.hello(protocol.Hello{ID: "d1", Token: good})
		d.send(protocol.TypeHello, 0, 0, mustMP(t, map[string]any{"v": 1, "id": "d1", "token": good}))
		d.expectError(400, true)
	})
}

func TestFrameRulesAfterHandshake(t *testing.T) {
	g := startGateway(t, Config{MaxFrame: 8192})
	tests := []struct {
		name string
		in   []byte
		code int
	}{
		{"payload max+1", protocol.AppendFrame(nil, protocol.TypeData, 0, 0, make([]byte, 8193)), 413},
		{"ping over 64", protocol.AppendFrame(nil, protocol.TypePing, 0, 0, make([]byte, 65)), 400},
		{"reliable seq 0", protocol.AppendFrame(nil, protocol.TypeData, protocol.FlagAckRequested, 0, nil), 400},
		{"WELCOME from device", protocol.AppendFrame(nil, protocol.TypeWelcome, 0, 0, nil), 400},
		{"reserved flag on DATA", protocol.AppendFrame(nil, protocol.TypeData, 0x81, 1, nil), 400},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dial(t, g)
			d.hello(protocol.Hello{ID: fmt.Sprint("f", i)})
			d.write(tt.in)
			d.expectError(tt.code, true)
		})
	}
	t.Run("payload exactly max echoes, PING gets PONG", func(t *testing.T) {
		d := dial(t, g)
		d.hello(protocol.Hello{ID: "fmax"})
		big := bytes.Repeat([]byte{7}, 8192)
		d.send(protocol.TypeData, 0, 0, big)
		if f := d.read(); f.Type != protocol.TypeData || !bytes.Equal(f.Payload, big) {
			t.Fatalf("echo of max payload: %v %d bytes", f.Type, len(f.Payload))
		}
		d.send(protocol.TypePing, 0, 0, []byte("ping-payload"))
		if f := d.read(); f.Type != protocol.TypePong || string(f.Payload) != "ping-payload" || f.Flags != 0 || f.Seq != 0 {
			t.Fatalf("pong %+v", f)
		}
	})
}

func TestTimeouts(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for timeouts")
	}
	g := startGateway(t, Config{HandshakeTimeout: 300 * time.Millisecond, Heartbeat: time.Second})
	t.Run("handshake", func(t *testing.T) {
		d := dial(t, g)
		start := time.Now()
		d.expectError(408, true)
		if el := time.Since(start); el < 250*time.Millisecond || el > 30*time.Second { // an upper bound for a loaded box
			t.Fatalf("handshake timeout after %v", el)
		}
	})
	t.Run("partial HELLO still times out", func(t *testing.T) {
		d := dial(t, g)
		d.write(rawHeader(100, protocol.TypeHello, 0, 0))
		d.expectError(408, true)
		// Both timed out before a HELLO: handshake results, not idle closes.
		waitFor(t, "408 handshake results", func() bool {
			return metric(g, `switchyard_handshake_results_total{result="408"}`) == 2
		})
	})
	t.Run("idle after 3 hb", func(t *testing.T) {
		d := dial(t, g)
		d.hello(protocol.Hello{ID: "idle"})
		start := time.Now()
		d.expectError(408, true)
		if el := time.Since(start); el < 2900*time.Millisecond || el > 30*time.Second { // an upper bound for a loaded box
			t.Fatalf("idle close after %v, want ~3s", el)
		}
	})
	t.Run("pings keep it alive", func(t *testing.T) {
		d := dial(t, g)
		d.hello(protocol.Hello{ID: "alive"})
		for range 5 {
			time.Sleep(time.Second)
			d.send(protocol.TypePing, 0, 0, nil)
			if f := d.read(); f.Type != protocol.TypePong {
				t.Fatalf("got %v", f.Type)
			}
		}
	})
}

func TestTakeoverAndResume(t *testing.T) {
	g := startGateway(t, Config{})
	a := dial(t, g)
	w1 := a.hello(protocol.Hello{ID: "dev"})
	for seq := uint32(1); seq <= 5; seq++ {
		a.send(protocol.TypeData, protocol.FlagAckRequested, seq, []byte{byte(seq)})
	}
	var acked, echoed uint32
	for acked < 5 || echoed < 5 {
		f := a.read()
		switch f.Type {
		case protocol.TypeAck:
			acked = f.Seq
		case protocol.TypeData:
			if f.Seq != echoed+1 || f.Payload[0] != byte(f.Seq) {
				t.Fatalf("echo out of order: %+v after %d", f, echoed)
			}
			echoed = f.Seq
		}
	}
	a.send(protocol.TypeAck, 0, 3, nil) // devices keeps 4 and 5 unacknowledged
	// Takeover by a resume from a second connection: a gets 409.
	b := dial(t, g)
	w2 := b.hello(protocol.Hello{ID: "dev", Resume: w1.Resume, Last: 3})
	a.expectError(409, true)
	if !w2.Resumed || w2.Session != w1.Session || w2.Last != 5 {
		t.Fatalf("resume welcome %+v", w2)
	}
	for want := uint32(4); want <= 5; want++ {
		if f := b.read(); f.Type != protocol.TypeData || f.Seq != want || f.Payload[0] != byte(want) {
			t.Fatalf("redelivery: got %+v want seq %d", f, want)
		}
	}
	b.send(protocol.TypeData, protocol.FlagAckRequested, 4, []byte{4}) // duplicate: re-ACKed, not echoed
	if f := b.read(); f.Type != protocol.TypeAck || f.Seq != 5 {
		t.Fatalf("duplicate answer %+v", f)
	}
	b.send(protocol.TypeData, protocol.FlagAckRequested, 6, []byte{6})
	if f := b.read(); f.Type != protocol.TypeData || f.Seq != 6 {
		t.Fatalf("after resume: %+v", f)
	}
	// A token for another device does not resume.
	c := dial(t, g)
	if w := c.hello(protocol.Hello{ID: "other", Resume: w1.Resume}); w.Resumed || w.Session == w1.Session {
		t.Fatalf("foreign token resumed: %+v", w)
	}
	// Garbage token: new session.
	d := dial(t, g)
	if w := d.hello(protocol.Hello{ID: "other2", Resume: []byte("garbage")}); w.Resumed {
		t.Fatalf("garbage token resumed")
	}
	// A new HELLO without resume takes over with a fresh session.
	e := dial(t, g)
	w3 := e.hello(protocol.Hello{ID: "dev"})
	b.expectError(409, true)
	if w3.Resumed || w3.Session == w1.Session || w3.Last != 0 {
		t.Fatalf("fresh takeover %+v", w3)
	}
	if got := g.metrics.takeovers.Get(); got != 2 {
		t.Fatalf("takeovers = %d", got)
	}
}

func TestRateLimit(t *testing.T) {
	g := startGateway(t, Config{Rate: 10, RateBurst: 1000, RateExcessClose: 500 * time.Millisecond})
	d := dial(t, g)
	d.hello(protocol.Hello{ID: "chatty"})
	// 1000 frames at once pass untouched.
	var batch []byte
	for range 1000 {
		batch = protocol.AppendFrame(batch, protocol.TypeData, 0, 0, []byte("x"))
	}
	d.write(batch)
	for i := range 1000 {
		if f := d.read(); f.Type != protocol.TypeData {
			t.Fatalf("frame %d: got %v %s", i, f.Type, errText(f))
		}
	}
	// The next burst is over the rate: 429, connection kept.
	d.write(batch[:len(batch)/10])
	d.expectError(429, false)
	// One hit for the episode, a drop for each frame over the rate.
	if hits, drops := metric(g, `switchyard_rate_limit_hits_total{limit="device"}`),
		metric(g, `switchyard_frames_dropped_total{reason="rate_limit"}`); hits != 1 || drops < 2 {
		t.Fatalf("rate limit: %v hits, %v frames dropped; want 1 hit, several drops", hits, drops)
	}
	// Excess that persists closes it.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := d.nc.Write(batch[:110]); err != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.expectClosed()
	waitFor(t, "rate_limit disconnect", func() bool { return g.metrics.disconnects[reasonRateLimit].Get() == 1 })
}

func TestSlowConsumer(t *testing.T) {
	g := startGateway(t, Config{MaxOutbound: 128 << 10, Rate: -1, MaxUnread: 64 << 20}) // the unread bound would otherwise close it first (413)
	d := dial(t, g)
	d.hello(protocol.Hello{ID: "slow"})
	// Never read: echoes pile up in the socket, then in the outbound queue.
	payload := make([]byte, 32<<10)
	frame := protocol.AppendFrame(nil, protocol.TypeData, 0, 0, payload)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2000 {
			if _, err := d.nc.Write(frame); err != nil {
				return
			}
		}
	}()
	waitFor(t, "slow consumer disconnect", func() bool { return g.metrics.disconnects[reasonSlowConsumer].Get() == 1 })
	d.nc.Close()
	<-done
}

func TestLimitsAndDrain(t *testing.T) {
	// The GOAWAY window (each device still served for it, then closed) is
	// long enough for a test goroutine held off a loaded box's cores to
	// send its frame inside it.
	g := startGateway(t, Config{MaxConns: 3, GoAwayRetry: drainWindow, Redirects: []string{"10.0.0.2:7400"}})
	var devs []*dev
	for i := range 3 {
		d := dial(t, g)
		d.hello(protocol.Hello{ID: fmt.Sprint("d", i)})
		devs = append(devs, d)
	}
	over := dial(t, g)
	over.send(protocol.TypeHello, 0, 0, nil) // accepted once data arrives (TCP_DEFER_ACCEPT)
	over.expectError(503, true)
	waitFor(t, "rejected conn closed", func() bool { return g.metrics.conns.Load() == 3 })

	// Close spreads the GOAWAYs over half of what its deadline leaves
	// after the window: with 10 s and three devices the last GOAWAY goes
	// out 3 s in and its device is closed 4 s in; the rest is spare for a
	// loaded box.
	ctx, cancel := context.WithTimeout(context.Background(), drainDeadline)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- g.Close(ctx) }()
	// Each device, on its own: GOAWAY, still served for retry_ms, then closed.
	var wg sync.WaitGroup
	errs := make(chan error, len(devs))
	for _, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- drainedDevice(d)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	if n := g.metrics.disconnects[reasonDrain].Get(); n != 3 {
		t.Fatalf("drain disconnects = %d", n)
	}
}

func TestManyConnectionsAtOnce(t *testing.T) {
	g := startGateway(t, Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := dial(t, g)
			p, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: fmt.Sprint("many-", i)})
			if _, err := d.nc.Write(protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, p)); err != nil {
				errs <- err
				return
			}
			f, err := d.tryRead(poll.Patience) // 200 handshakes at once on a loaded box
			if err != nil || f.Type != protocol.TypeWelcome {
				errs <- fmt.Errorf("conn %d: %v %v %s", i, err, f.Type, errText(f))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// drainedDevice checks what a device sees of a drain.
func drainedDevice(d *dev) error {
	f, err := d.tryRead(poll.Patience)
	if err != nil || f.Type != protocol.TypeGoAway {
		return fmt.Errorf("want GOAWAY, got %v %v", f.Type, err)
	}
	var ga protocol.GoAway
	if err := protocol.Unmarshal(f.Payload, &ga); err != nil || ga.RetryMS != int(drainWindow/time.Millisecond) || ga.Reason == "" || len(ga.Redirect) != 1 {
		return fmt.Errorf("goaway %+v %v", ga, err)
	}
	if _, err := d.nc.Write(protocol.AppendFrame(nil, protocol.TypeData, 0, 0, []byte("still"))); err != nil {
		return err
	}
	if f, err := d.tryRead(poll.Patience); err != nil || f.Type != protocol.TypeData {
		return fmt.Errorf("not served after GOAWAY: %v %v", f.Type, err)
	}
	f, err = d.tryRead(poll.Patience)
	var ne net.Error
	switch {
	case err == nil:
		return fmt.Errorf("frame %v after GOAWAY's echo, want close", f.Type)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("not closed after GOAWAY's window: %v", err)
	}
	return nil
}

// TestLimitsAndDrain's GOAWAY retry, and its deadline for Close.
const (
	drainWindow   = time.Second
	drainDeadline = 10 * time.Second
)

// TestPartialFramesHoldNoGoroutine: devices that send half a frame and stop
// cost no goroutine (the handler copies the bytes out and returns), and a
// frame that arrives byte by byte is still handled.
func TestPartialFramesHoldNoGoroutine(t *testing.T) {
	g := startGateway(t, Config{})
	before := runtime.NumGoroutine()
	var devs []*dev
	for i := range 200 {
		d := dial(t, g)
		d.hello(protocol.Hello{ID: fmt.Sprint("half-", i)})
		d.write(protocol.AppendFrame(nil, protocol.TypeData, 0, 0, make([]byte, 1000))[:500])
		devs = append(devs, d)
	}
	waitGoroutinesAtMost(t, before+50, "200 half frames pending")
	// Finishing the frames completes them.
	rest := protocol.AppendFrame(nil, protocol.TypeData, 0, 0, make([]byte, 1000))[500:]
	for _, d := range devs {
		d.write(rest)
		if f := d.read(); f.Type != protocol.TypeData || len(f.Payload) != 1000 {
			t.Fatalf("echo after completion: %v %d", f.Type, len(f.Payload))
		}
	}
	// Byte by byte.
	d := devs[0]
	for _, b := range protocol.AppendFrame(nil, protocol.TypePing, 0, 0, []byte("slow")) {
		d.write([]byte{b})
	}
	if f := d.read(); f.Type != protocol.TypePong || string(f.Payload) != "slow" {
		t.Fatalf("pong %+v", f)
	}
}

// A HELLO the gateway reads only after its device closed that connection
// (the device gave up waiting and has reconnected since) takes nothing
// over: the device's live connection keeps its session, with or without
// a resume token in the stale HELLO. The stale connection sends its HELLO
// and FIN in one segment (TCP_CORK, then shutdown), so the gateway has
// the FIN in hand whenever it reads the HELLO.
func TestStaleHelloTakesNothing(t *testing.T) {
	g := startGateway(t, Config{})
	live := dial(t, g)
	w := live.hello(protocol.Hello{ID: "dev"})
	for i, stale := range []protocol.Hello{{V: 1, ID: "dev"}, {V: 1, ID: "dev", Resume: w.Resume}} {
		p, err := protocol.EncodeHello(&stale)
		if err != nil {
			t.Fatal(err)
		}
		helloAndFIN(t, g, protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, p))
		waitFor(t, "the stale HELLO handled", func() bool {
			return metric(g, "switchyard_handshakes_abandoned_total") == float64(i+1) || g.metrics.takeovers.Get() > 0
		})
		if got := g.metrics.takeovers.Get(); got != 0 {
			t.Fatalf("stale HELLO %d took the session over (takeovers = %d)", i, got)
		}
		live.send(protocol.TypeData, protocol.FlagAckRequested, uint32(i+1), []byte{byte(i)})
		for acked := false; !acked; {
			switch f := live.read(); f.Type {
			case protocol.TypeAck:
				acked = f.Seq == uint32(i+1)
			case protocol.TypeError:
				t.Fatalf("after stale HELLO %d the live connection got ERROR %s", i, errText(f))
			}
		}
	}
}

// helloAndFIN connects to g and sends b with the FIN in the same segment.
func helloAndFIN(t *testing.T, g *Gateway, b []byte) {
	t.Helper()
	nc, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tc := nc.(*net.TCPConn)
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, 1)
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	if _, err := tc.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := tc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
}

// TestIdleDeadlinesShareTicks: an idle deadline is rounded up to the idle
// quantum, never early and less than a quantum late, so that the
// connections last heard from within one quantum share one wake-up of the
// wheel instead of waking it each on its own.
func TestIdleDeadlinesShareTicks(t *testing.T) {
	for _, hb := range []time.Duration{time.Second, 300 * time.Second} {
		g := startGateway(t, Config{Heartbeat: hb})
		q := g.idleQuantum
		if q < 2 {
			t.Fatalf("heartbeat %v: idle quantum %d ticks, want deadlines grouped", hb, q)
		}
		due := map[int64]bool{}
		for from := int64(1000); from < 1000+4*q; from++ {
			at := g.idleAt(from)
			if at < from+g.idleTicks || at >= from+g.idleTicks+q || at%q != 0 {
				t.Fatalf("heartbeat %v: heard from at tick %d, idle deadline %d; want the first multiple of %d from %d",
					hb, from, at, q, from+g.idleTicks)
			}
			due[at] = true
		}
		if len(due) > 5 {
			t.Fatalf("heartbeat %v: connections heard from over %d ticks fall due at %d ticks, want at most 5", hb, 4*q, len(due))
		}
	}
}
