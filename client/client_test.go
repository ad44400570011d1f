package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/client/clienttest"
	"github.com/switchyard-gw/switchyard/protocol"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait by polling.
const waitTimeout = 60 * time.Second

// waitFor polls cond until it holds, failing the test after waitTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testConfig is a Config for addr with fast reconnects.
func testConfig(addr string) client.Config {
	return client.Config{Addr: addr, ID: "dev-1", ReconnectMin: 5 * time.Millisecond, ReconnectMax: 20 * time.Millisecond}
}

// welcome is the WELCOME of a new session s.
func welcome(s string) protocol.Welcome {
	return protocol.Welcome{Session: s, Resume: []byte("resume-" + s), HB: 30, MaxFrame: 1024, Node: "fake"}
}

// dialResult is what Dial returned, run in the background.
type dialResult struct {
	c   *client.Client
	err error
}

// dialAsync runs Dial in a goroutine so that the test can play the gateway.
func dialAsync(t *testing.T, cfg client.Config) <-chan dialResult {
	t.Helper()
	ch := make(chan dialResult, 1)
	go func() {
		c, err := client.Dial(context.Background(), cfg)
		ch <- dialResult{c, err}
	}()
	return ch
}

// await returns the Dial result, registering Close for cleanup.
func await(t *testing.T, ch <-chan dialResult) (*client.Client, error) {
	t.Helper()
	select {
	case r := <-ch:
		if r.c != nil {
			t.Cleanup(func() { r.c.Close() })
		}
		return r.c, r.err
	case <-time.After(waitTimeout):
		t.Fatal("Dial did not return")
		return nil, nil
	}
}

// connect dials g with cfg, answers the HELLO with w and returns the
// client, the gateway side of the connection and the HELLO.
func connect(t *testing.T, g *clienttest.Gateway, cfg client.Config, w protocol.Welcome) (*client.Client, *clienttest.Conn, protocol.Hello) {
	t.Helper()
	ch := dialAsync(t, cfg)
	gc := g.Accept()
	h, err := gc.ReadHello()
	if err != nil {
		t.Fatalf("read HELLO: %v", err)
	}
	if err := gc.Welcome(w); err != nil {
		t.Fatalf("write WELCOME: %v", err)
	}
	c, err := await(t, ch)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return c, gc, h
}

// readData reads the next DATA frame, skipping heartbeats and ACKs.
func readData(t *testing.T, gc *clienttest.Conn) protocol.Frame {
	t.Helper()
	f, err := gc.ReadType(protocol.TypeData, protocol.TypeAck, protocol.TypePong)
	if err != nil {
		t.Fatalf("read DATA: %v", err)
	}
	return f
}

// recv receives one message within waitTimeout.
func recv(t *testing.T, c *client.Client) client.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	m, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return m
}

func send(t *testing.T, c *client.Client, payload string, reliable bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.Send(ctx, []byte(payload), reliable); err != nil {
		t.Fatalf("Send(%q, %v): %v", payload, reliable, err)
	}
}

func TestDialHandshake(t *testing.T) {
	secret := []byte("s3cret")
	g := clienttest.NewGateway(t, nil)
	cfg := testConfig(g.Addr())
	cfg.Secret = secret
	cfg.Tags = map[string]string{"ver": "1.2", "region": "eu"}
	c, _, h := connect(t, g, cfg, welcome("sess-1"))

	if h.V != protocol.Version || h.ID != "dev-1" || len(h.Resume) != 0 || h.Last != 0 {
		t.Errorf("HELLO = %+v", h)
	}
	if h.Tags["ver"] != "1.2" || h.Tags["region"] != "eu" || len(h.Tags) != 2 {
		t.Errorf("HELLO tags = %v", h.Tags)
	}
	if err := protocol.VerifyToken([][]byte{secret}, "dev-1", h.Token, time.Now()); err != nil {
		t.Errorf("token %q does not verify: %v", h.Token, err)
	}
	if c.Session() != "sess-1" || c.Resumed() {
		t.Errorf("Session() = %q, Resumed() = %v", c.Session(), c.Resumed())
	}
	if err := c.Send(context.Background(), make([]byte, 1025), true); !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("Send over max_frame: %v, want ErrTooLarge", err)
	}
}

func TestDialStaticToken(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	cfg := testConfig(g.Addr())
	cfg.Token = "123.abc"
	_, _, h := connect(t, g, cfg, welcome("s"))
	if h.Token != "123.abc" {
		t.Errorf("token = %q", h.Token)
	}
}

func TestDialRefused(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		sentinel error
	}{
		{"unauthorized", protocol.CodeUnauthorized, client.ErrUnauthorized},
		{"taken over", protocol.CodeConflict, client.ErrTakenOver},
		{"unavailable", protocol.CodeUnavailable, client.ErrUnavailable},
		{"bad request", protocol.CodeBadRequest, nil},
		{"too large", protocol.CodeTooLarge, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := clienttest.NewGateway(t, nil)
			ch := dialAsync(t, testConfig(g.Addr()))
			gc := g.Accept()
			if _, err := gc.ReadHello(); err != nil {
				t.Fatal(err)
			}
			if err := gc.Error(tt.code, "nope"); err != nil {
				t.Fatal(err)
			}
			_, err := await(t, ch)
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Code != tt.code || ce.Message != "nope" {
				t.Fatalf("Dial error = %v, want *client.Error %d", err, tt.code)
			}
			if tt.sentinel != nil && !errors.Is(err, tt.sentinel) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.sentinel)
			}
		})
	}
}

func TestDialFailures(t *testing.T) {
	tests := []struct {
		name   string
		gw     func(*clienttest.Conn) // plays the gateway after reading HELLO
		target error
	}{
		{"DATA instead of WELCOME", func(gc *clienttest.Conn) { _ = gc.WriteFrame(protocol.TypeData, 0, 0, nil) }, client.ErrHandshake},
		{"no answer", func(*clienttest.Conn) {}, os.ErrDeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := clienttest.NewGateway(t, nil)
			cfg := testConfig(g.Addr())
			cfg.HandshakeTimeout = 100 * time.Millisecond
			ch := dialAsync(t, cfg)
			gc := g.Accept()
			if _, err := gc.ReadHello(); err != nil {
				t.Fatal(err)
			}
			tt.gw(gc)
			if _, err := await(t, ch); !errors.Is(err, tt.target) {
				t.Fatalf("Dial error = %v, want %v", err, tt.target)
			}
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		g := clienttest.NewGateway(t, nil)
		addr := g.Addr()
		g.Close()
		if _, err := client.Dial(context.Background(), testConfig(addr)); err == nil {
			t.Fatal("Dial to a closed port succeeded")
		}
	})
	t.Run("canceled", func(t *testing.T) {
		g := clienttest.NewGateway(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan error, 1)
		go func() {
			_, err := client.Dial(ctx, testConfig(g.Addr()))
			ch <- err
		}()
		gc := g.Accept()
		if _, err := gc.ReadHello(); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-ch; !errors.Is(err, context.Canceled) {
			t.Fatalf("Dial error = %v, want context.Canceled", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	many := map[string]string{}
	for i := range 17 {
		many[fmt.Sprint(i)] = "x"
	}
	tests := []struct {
		name string
		mod  func(*client.Config)
		ok   bool
	}{
		{"minimal", func(*client.Config) {}, true},
		{"no id", func(c *client.Config) { c.ID = "" }, false},
		{"space in id", func(c *client.Config) { c.ID = "a b" }, false},
		{"token and secret", func(c *client.Config) { c.Token, c.Secret = "1.x", []byte("k") }, false},
		{"17 tags", func(c *client.Config) { c.Tags = many }, false},
		{"negative timeout", func(c *client.Config) { c.DialTimeout = -1 }, false},
		{"min above max", func(c *client.Config) { c.ReconnectMin, c.ReconnectMax = time.Second, time.Millisecond }, false},
		{"negative pending", func(c *client.Config) { c.MaxPending = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := client.Config{ID: "d"}
			tt.mod(&cfg)
			if err := cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestSend(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	c, gc, _ := connect(t, g, testConfig(g.Addr()), welcome("s"))
	sends := []struct {
		payload  string
		reliable bool
		flags    protocol.Flags
		seq      uint32
	}{
		{"a", false, 0, 0},
		{"b", true, protocol.FlagAckRequested, 1},
		{"c", true, protocol.FlagAckRequested, 2},
		{"d", false, 0, 0},
		{"e", true, protocol.FlagAckRequested, 3},
	}
	for _, s := range sends {
		send(t, c, s.payload, s.reliable)
	}
	for _, s := range sends {
		f := readData(t, gc)
		if string(f.Payload) != s.payload || f.Flags != s.flags || f.Seq != s.seq {
			t.Errorf("got DATA %q flags %d seq %d, want %q flags %d seq %d", f.Payload, f.Flags, f.Seq, s.payload, s.flags, s.seq)
		}
	}
	if st := c.Stats(); st.Sent != 5 || st.Pending != 3 {
		t.Errorf("Stats = %+v, want Sent 5, Pending 3", st)
	}
}

func TestAckTrimsPending(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	cfg := testConfig(g.Addr())
	cfg.MaxPending = 3
	c, gc, _ := connect(t, g, cfg, welcome("s"))
	for i := range 3 {
		send(t, c, fmt.Sprint(i), true)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := c.Send(ctx, []byte("full"), true); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send with MaxPending reached = %v, want DeadlineExceeded", err)
	}
	if err := c.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with frames pending = %v, want DeadlineExceeded", err)
	}
	if err := gc.WriteFrame(protocol.TypeAck, 0, 2, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ACK 2 to trim", func() bool { return c.Stats().Pending == 1 })
	send(t, c, "next", true)
	for range 3 {
		readData(t, gc)
	}
	if f := readData(t, gc); f.Seq != 4 || string(f.Payload) != "next" {
		t.Fatalf("after ACK: DATA %q seq %d, want \"next\" seq 4", f.Payload, f.Seq)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- c.Flush(context.Background()) }()
	if err := gc.WriteFrame(protocol.TypeAck, 0, 4, nil); err != nil {
		t.Fatal(err)
	}
	if err := <-flushed; err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if p := c.Stats().Pending; p != 0 {
		t.Fatalf("Pending = %d after ACK 4", p)
	}
}

func TestResendAfterReconnect(t *testing.T) {
	tests := []struct {
		name    string
		resumed bool
		last    uint32
		resent  []uint32 // seqs written on the new connection, in order
		nextSeq uint32   // seq of the next new frame
	}{
		{"resumed", true, 2, []uint32{3, 4, 5}, 6},
		{"resumed, gateway had more", true, 4, []uint32{5}, 6},
		{"new session renumbers", false, 0, []uint32{1, 2, 3}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := clienttest.NewGateway(t, nil)
			c, gc, _ := connect(t, g, testConfig(g.Addr()), welcome("s1"))
			for i := 1; i <= 5; i++ {
				send(t, c, fmt.Sprint("m", i), true)
			}
			for range 5 {
				readData(t, gc)
			}
			if err := gc.WriteFrame(protocol.TypeAck, 0, 2, nil); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "ACK 2", func() bool { return c.Stats().Pending == 3 })
			gc.Close()

			gc2 := g.Accept()
			h, err := gc2.ReadHello()
			if err != nil {
				t.Fatal(err)
			}
			if string(h.Resume) != "resume-s1" || h.Last != 0 {
				t.Errorf("resume HELLO: resume %q last %d", h.Resume, h.Last)
			}
			w := welcome("s1")
			if !tt.resumed {
				w = welcome("s2")
			}
			w.Resumed, w.Last = tt.resumed, tt.last
			if err := gc2.Welcome(w); err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.resent {
				if f := readData(t, gc2); f.Seq != want || f.Flags != protocol.FlagAckRequested {
					t.Fatalf("resent seq %d flags %d, want seq %d", f.Seq, f.Flags, want)
				}
			}
			send(t, c, "new", true)
			if f := readData(t, gc2); f.Seq != tt.nextSeq || string(f.Payload) != "new" {
				t.Fatalf("new frame %q seq %d, want seq %d", f.Payload, f.Seq, tt.nextSeq)
			}
			st := c.Stats()
			if st.Reconnects != 1 || st.Resends != uint64(len(tt.resent)) || c.Resumed() != tt.resumed {
				t.Errorf("Stats = %+v, Resumed %v", st, c.Resumed())
			}
		})
	}
}

func TestQueuedWhileDisconnected(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	c, gc, _ := connect(t, g, testConfig(g.Addr()), welcome("s1"))
	gc.Close()
	gc2 := g.Accept() // the client is reconnecting; hold the WELCOME back
	if _, err := gc2.ReadHello(); err != nil {
		t.Fatal(err)
	}
	send(t, c, "queued", true)
	if err := c.Send(context.Background(), []byte("lost"), false); !errors.Is(err, client.ErrNotConnected) {
		t.Fatalf("best-effort Send while reconnecting = %v, want ErrNotConnected", err)
	}
	w := welcome("s1")
	w.Resumed = true
	if err := gc2.Welcome(w); err != nil {
		t.Fatal(err)
	}
	if f := readData(t, gc2); f.Seq != 1 || string(f.Payload) != "queued" {
		t.Fatalf("DATA %q seq %d, want \"queued\" seq 1", f.Payload, f.Seq)
	}
	if st := c.Stats(); st.Sent != 1 || st.Resends != 0 {
		t.Errorf("Stats = %+v, want Sent 1 Resends 0", st)
	}
}

func TestDownstreamAckAndDuplicates(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	c, gc, _ := connect(t, g, testConfig(g.Addr()), welcome("s"))
	frames := []struct {
		seq     uint32
		payload string
	}{{1, "one"}, {2, "two"}, {2, "two again"}, {0, "best effort"}, {1, "one again"}, {3, "three"}}
	for _, f := range frames {
		flags := protocol.FlagAckRequested
		if f.seq == 0 {
			flags = 0
		}
		if err := gc.WriteFrame(protocol.TypeData, flags, f.seq, []byte(f.payload)); err != nil {
			t.Fatal(err)
		}
	}
	want := []client.Message{
		{Payload: []byte("one"), Reliable: true, Seq: 1},
		{Payload: []byte("two"), Reliable: true, Seq: 2},
		{Payload: []byte("best effort")},
		{Payload: []byte("three"), Reliable: true, Seq: 3},
	}
	for _, w := range want {
		m := recv(t, c)
		if !bytes.Equal(m.Payload, w.Payload) || m.Reliable != w.Reliable || m.Seq != w.Seq {
			t.Fatalf("Recv = %+v, want %+v", m, w)
		}
	}
	for {
		f, err := gc.ReadType(protocol.TypeAck)
		if err != nil {
			t.Fatalf("read ACK: %v", err)
		}
		if f.Seq > 3 {
			t.Fatalf("ACK %d beyond delivered", f.Seq)
		}
		if f.Seq == 3 {
			break
		}
	}
	if st := c.Stats(); st.Received != 4 || st.Duplicates != 2 {
		t.Errorf("Stats = %+v, want Received 4 Duplicates 2", st)
	}
}

func TestGoAway(t *testing.T) {
	a := clienttest.NewGateway(t, nil)
	b := clienttest.NewGateway(t, nil)
	tests := []struct {
		name     string
		redirect []string
		next     *clienttest.Gateway
	}{
		{"redirect", []string{b.Addr()}, b},
		{"no redirect", nil, a},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, gc, _ := connect(t, a, testConfig(a.Addr()), welcome("s1"))
			for seq := uint32(1); seq <= 2; seq++ {
				if err := gc.WriteFrame(protocol.TypeData, protocol.FlagAckRequested, seq, []byte("x")); err != nil {
					t.Fatal(err)
				}
				recv(t, c)
			}
			start := time.Now()
			if err := gc.GoAway(protocol.GoAway{Reason: "drain", RetryMS: 100, Redirect: tt.redirect}); err != nil {
				t.Fatal(err)
			}
			for { // the client keeps the connection until it leaves, then closes it
				if _, err := gc.ReadType(protocol.TypeData, protocol.TypeAck); err != nil {
					break
				}
			}
			if d := time.Since(start); d > 20*time.Second { // an upper bound for a loaded box
				t.Errorf("left %v after GOAWAY with retry_ms 100", d)
			}
			gc2 := tt.next.Accept()
			h, err := gc2.ReadHello()
			if err != nil {
				t.Fatal(err)
			}
			if string(h.Resume) != "resume-s1" || h.Last != 2 {
				t.Errorf("resume HELLO: resume %q last %d, want resume-s1 last 2", h.Resume, h.Last)
			}
			w := welcome("s1")
			w.Resumed = true
			if err := gc2.Welcome(w); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "resume", func() bool { return c.Stats().Reconnects == 1 })
			if !c.Resumed() || c.Session() != "s1" {
				t.Errorf("Resumed() %v Session() %q", c.Resumed(), c.Session())
			}
			c.Close()
		})
	}
}

// TestFallbackAfterGatewayDies: the gateway dies without a GOAWAY (its
// listener and connections gone, as after kill -9); the client tries the
// dead one and Addr, then Config.Fallbacks, and resumes its session on the
// fallback gateway, resending what was not acknowledged.
func TestFallbackAfterGatewayDies(t *testing.T) {
	a := clienttest.NewGateway(t, nil)
	b := clienttest.NewGateway(t, nil)
	cfg := testConfig(a.Addr())
	cfg.Fallbacks = []string{a.Addr(), b.Addr()}
	c, gc, _ := connect(t, a, cfg, welcome("s1"))
	send(t, c, "m1", true)
	send(t, c, "m2", true)
	for range 2 {
		readData(t, gc)
	}
	if err := gc.WriteFrame(protocol.TypeAck, 0, 1, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ACK 1", func() bool { return c.Stats().Pending == 1 })
	a.Close()

	gc2 := b.Accept()
	h, err := gc2.ReadHello()
	if err != nil {
		t.Fatal(err)
	}
	if string(h.Resume) != "resume-s1" {
		t.Errorf("HELLO at the fallback: resume %q, want resume-s1", h.Resume)
	}
	w := welcome("s1")
	w.Resumed, w.Last = true, 1
	if err := gc2.Welcome(w); err != nil {
		t.Fatal(err)
	}
	if f := readData(t, gc2); f.Seq != 2 || string(f.Payload) != "m2" {
		t.Fatalf("resent %q seq %d, want m2 seq 2", f.Payload, f.Seq)
	}
	waitFor(t, "resume", func() bool { return c.Stats().Reconnects == 1 })
	if !c.Resumed() || c.Session() != "s1" {
		t.Errorf("Resumed() %v Session() %q", c.Resumed(), c.Session())
	}
}

func TestHeartbeat(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	w := welcome("s")
	w.HB = 1
	start := time.Now()
	_, gc, _ := connect(t, g, testConfig(g.Addr()), w)
	f, err := gc.ReadFrame()
	if err != nil || f.Type != protocol.TypePing {
		t.Fatalf("got %v %v, want PING", f.Type, err)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 20*time.Second { // an upper bound for a loaded box
		t.Errorf("PING after %v, want about hb = 1s", d)
	}
	if err := gc.WriteFrame(protocol.TypePing, 0, 0, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	f, err = gc.ReadFrame()
	if err != nil || f.Type != protocol.TypePong || string(f.Payload) != "abc" {
		t.Fatalf("got %v %q %v, want PONG \"abc\"", f.Type, f.Payload, err)
	}
}

func TestDeadConnectionReconnects(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	cfg := testConfig(g.Addr())
	cfg.Heartbeat = 50 * time.Millisecond
	c, gc, _ := connect(t, g, cfg, welcome("s"))
	for { // a silent gateway: read PINGs, never answer
		f, err := gc.ReadFrame()
		if err != nil {
			break
		}
		if f.Type != protocol.TypePing {
			t.Fatalf("got %v, want PING", f.Type)
		}
	}
	gc2 := g.Accept()
	if h, err := gc2.ReadHello(); err != nil || string(h.Resume) != "resume-s" {
		t.Fatalf("HELLO after dead connection: %+v %v", h, err)
	}
	if c.Stats().Reconnects != 0 {
		t.Error("counted a reconnect before WELCOME")
	}
}

func TestFinalErrors(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		sentinel error
	}{
		{"taken over", protocol.CodeConflict, client.ErrTakenOver},
		{"unauthorized", protocol.CodeUnauthorized, client.ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := clienttest.NewGateway(t, nil)
			c, gc, _ := connect(t, g, testConfig(g.Addr()), welcome("s"))
			if err := gc.WriteFrame(protocol.TypeData, 0, 0, []byte("before")); err != nil {
				t.Fatal(err)
			}
			if err := gc.Error(tt.code, "bye"); err != nil {
				t.Fatal(err)
			}
			gc.Close()
			if m := recv(t, c); string(m.Payload) != "before" {
				t.Fatalf("Recv = %q, want the message queued before the error", m.Payload)
			}
			_, err := c.Recv(context.Background())
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("Recv error = %v, want %v", err, tt.sentinel)
			}
			if err := c.Send(context.Background(), []byte("x"), true); !errors.Is(err, tt.sentinel) {
				t.Errorf("Send after final error = %v", err)
			}
			if g.Accepted() != 1 || c.Stats().Reconnects != 0 {
				t.Errorf("reconnected after final error %d", tt.code)
			}
		})
	}
}

func TestRetryAfterUnavailable(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	c, gc, _ := connect(t, g, testConfig(g.Addr()), welcome("s"))
	if err := gc.Error(protocol.CodeInternal, "oops"); err != nil {
		t.Fatal(err)
	}
	gc.Close()
	for range 2 { // refused twice, then welcomed
		gc := g.Accept()
		if _, err := gc.ReadHello(); err != nil {
			t.Fatal(err)
		}
		if err := gc.Error(protocol.CodeUnavailable, "draining"); err != nil {
			t.Fatal(err)
		}
		gc.Close()
	}
	gc = g.Accept()
	if _, err := gc.ReadHello(); err != nil {
		t.Fatal(err)
	}
	w := welcome("s")
	w.Resumed = true
	if err := gc.Welcome(w); err != nil {
		t.Fatal(err)
	}
	send(t, c, "after", true)
	if f := readData(t, gc); string(f.Payload) != "after" || f.Seq != 1 {
		t.Fatalf("DATA %q seq %d", f.Payload, f.Seq)
	}
	if st := c.Stats(); st.Reconnects != 1 {
		t.Errorf("Reconnects = %d, want 1", st.Reconnects)
	}
}

func TestDisableReconnect(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	cfg := testConfig(g.Addr())
	cfg.DisableReconnect = true
	c, gc, _ := connect(t, g, cfg, welcome("s"))
	gc.Close()
	if _, err := c.Recv(context.Background()); !errors.Is(err, client.ErrDisconnected) {
		t.Fatalf("Recv = %v, want ErrDisconnected", err)
	}
}

func TestClose(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	cfg := testConfig(g.Addr())
	cfg.MaxPending = 1
	c, _, _ := connect(t, g, cfg, welcome("s"))
	send(t, c, "fills MaxPending", true)
	blocked := make(chan error, 1)
	go func() { blocked <- c.Send(context.Background(), []byte("waits"), true) }()
	received := make(chan error, 1)
	go func() {
		_, err := c.Recv(context.Background())
		received <- err
	}()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, ch := range map[string]chan error{"Send": blocked, "Recv": received} {
		if err := <-ch; !errors.Is(err, client.ErrClosed) {
			t.Errorf("blocked %s = %v, want ErrClosed", name, err)
		}
	}
	if err := c.Send(context.Background(), []byte("x"), false); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Send after Close = %v", err)
	}
}

func TestEcho(t *testing.T) {
	g := clienttest.NewGateway(t, clienttest.Echo)
	c, err := client.Dial(context.Background(), testConfig(g.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 200
	for i := range n {
		send(t, c, fmt.Sprint(i), i%2 == 0)
	}
	for i := range n {
		if m := recv(t, c); string(m.Payload) != fmt.Sprint(i) || m.Reliable != (i%2 == 0) {
			t.Fatalf("echo %d: %+v", i, m)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestResendAfterTimeout: reliable frames the gateway drops without a 429
// (no ACK comes) are sent again from the oldest one after ResendTimeout,
// on the same connection; an ACK ends it.
func TestResendAfterTimeout(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	cfg := testConfig(g.Addr())
	cfg.ResendTimeout = 100 * time.Millisecond
	c, gc, _ := connect(t, g, cfg, welcome("s"))
	send(t, c, "a", true)
	send(t, c, "b", true)
	for _, want := range []string{"a", "b", "a", "b"} { // the first two dropped, then the go-back
		if f := readData(t, gc); string(f.Payload) != want {
			t.Fatalf("DATA %q seq %d, want %q", f.Payload, f.Seq, want)
		}
	}
	if err := gc.WriteFrame(protocol.TypeAck, 0, 2, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ACK 2 to trim", func() bool { return c.Stats().Pending == 0 })
	if st := c.Stats(); st.TimeoutResends == 0 || st.Reconnects != 0 {
		t.Fatalf("want a timeout go-back on the same connection: %+v", st)
	}
}

// An overloaded gateway's retry hint (retry_ms in ERROR 503) holds the
// next attempt back at least half the hint, however short the backoff.
func TestRetryHintHonoured(t *testing.T) {
	g := clienttest.NewGateway(t, nil)
	c, gc, _ := connect(t, g, testConfig(g.Addr()), welcome("s"))
	gc.Close() // the connection dies: the client reconnects
	gc = g.Accept()
	if _, err := gc.ReadHello(); err != nil {
		t.Fatal(err)
	}
	const hint = 1200 * time.Millisecond
	if err := gc.WriteMap(protocol.TypeError, &protocol.ErrorMsg{Code: protocol.CodeUnavailable,
		Message: "gateway overloaded", RetryMS: int(hint / time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	refused := time.Now()
	gc.Close()
	gc = g.Accept()
	if el := time.Since(refused); el < hint/2 {
		t.Fatalf("the client came back %v after a 503 with retry_ms %v, want at least half of it", el, hint)
	}
	if _, err := gc.ReadHello(); err != nil {
		t.Fatal(err)
	}
	if err := gc.Welcome(welcome("s")); err != nil {
		t.Fatal(err)
	}
	send(t, c, "after", true)
	if f := readData(t, gc); string(f.Payload) != "after" {
		t.Fatalf("DATA %q", f.Payload)
	}
}
