package testcluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// Losing a gateway (issue 7, point 4): the devices of a gateway that
// drains (SIGTERM) or is killed (SIGKILL) resume on another gateway, and
// their sessions, which live on the shards, go on where they were.

// gwLossDevices is how many streaming devices a gateway-loss test puts
// on the gateway it loses.
const gwLossDevices = 24

// TestProcsGatewayKillResumesElsewhere: 2 gateways × 2 counter shards from
// the binary; 24 devices (the Go client, with the other gateway as a
// fallback address) stream reliable DATA through gateway A, pipelined,
// and a raw device on A holds two replies unacknowledged. A is killed
// (SIGKILL: no GOAWAY, no FIN from a drain). From the device side: every
// device reconnects to B and resumes its session (`resumed` true, same
// session id); every reliable frame is answered exactly once and in order,
// the counter going on from where it was (1, 2, 3, … with no gap, repeat
// or reset, and a last exchange counting exactly the frames sent); the raw
// device, resuming on B with HELLO last 1, gets WELCOME last 3 and the
// replies 2 and 3 it had not acknowledged again, then is served on.
func TestProcsGatewayKillResumesElsewhere(t *testing.T) {
	p, ctx := convergedProcs(t, Options{Gateways: 2, Shards: 2, App: "counter"}, 4*poll.Patience)
	a, b := p.Gateway(0), p.Gateway(1)
	raw, w1 := rawCounterDevice(t, a.Addr, "raw-kill")
	l := startGatewayLoss(ctx, t, p, "kill", client.Config{Addr: a.Addr, Fallbacks: []string{b.Addr}})

	killed := time.Now()
	a.Kill()
	l.waitResumed(t, killed)
	l.finish(ctx, t)
	raw.nc.Close()
	resumeRedelivered(t, b.Addr, "raw-kill", w1)
}

// TestProcsGatewayDrainResumesElsewhere: the same devices (without a
// fallback address) through gateway A, which drains (SIGTERM): its
// readiness goes, its GOAWAY names B (from gossip), and every device
// follows it and resumes on B; every reliable frame is answered exactly
// once and in order, the counter going on from where it was, as in
// TestProcsGatewayKillResumesElsewhere.
func TestProcsGatewayDrainResumesElsewhere(t *testing.T) {
	p, ctx := convergedProcs(t, Options{Gateways: 2, Shards: 2, App: "counter"}, 4*poll.Patience)
	a := p.Gateway(0)
	waitGateways(ctx, t, a.Admin, 2, 0)
	l := startGatewayLoss(ctx, t, p, "drain", client.Config{Addr: a.Addr})

	stopped := time.Now()
	sctx, scancel := context.WithTimeout(ctx, poll.Patience)
	err := a.Stop(sctx)
	scancel()
	if err != nil {
		t.Errorf("gateway %s: drain: %v", a.Name, err)
	}
	l.waitResumed(t, stopped)
	l.finish(ctx, t)
}

// gatewayLoss is the streaming devices of a gateway-loss test.
type gatewayLoss struct {
	streams  []*stream
	sessions []string // each device's session id before the loss
	stop     chan struct{}
	wg       sync.WaitGroup
	stopped  bool
}

// startGatewayLoss dials gwLossDevices devices with cfg (ID set per
// device, MaxPending 16), starts their streams and returns once each has
// 20 replies. The streams stop at the end of the test at the latest.
func startGatewayLoss(ctx context.Context, t *testing.T, p *Procs, prefix string, cfg client.Config) *gatewayLoss {
	t.Helper()
	l := &gatewayLoss{stop: make(chan struct{})}
	ring := p.Ring()
	shards := map[string]int{}
	for i := range gwLossDevices {
		cfg.ID, cfg.MaxPending = fmt.Sprintf("%s-%d", prefix, i), 16
		d := Dial(ctx, t, cfg)
		l.streams = append(l.streams, &stream{id: cfg.ID, d: d, sent: make(chan struct{})})
		l.sessions = append(l.sessions, d.Session())
		s, _ := ring.Owner(cfg.ID)
		shards[s.Name]++
	}
	if len(shards) < 2 {
		t.Fatalf("the devices are all on one shard: %v", shards)
	}
	for _, s := range l.streams {
		l.wg.Go(func() { s.send(ctx, l.stop) })
		l.wg.Go(func() { s.recv(ctx) })
	}
	t.Cleanup(l.halt)
	waitUntil(t, "every device has 20 replies before the gateway goes", l.progress(20))
	return l
}

// halt stops the senders and waits for the streams to end.
func (l *gatewayLoss) halt() {
	if !l.stopped {
		l.stopped = true
		close(l.stop)
	}
	l.wg.Wait()
}

// progress returns a condition: every device has n replies more than now.
func (l *gatewayLoss) progress(n int) func() bool {
	base := make([]int, len(l.streams))
	for i, s := range l.streams {
		base[i] = s.replies()
	}
	return func() bool {
		for i, s := range l.streams {
			if s.replies() < base[i]+n {
				return false
			}
		}
		return true
	}
}

// waitResumed waits until every device has reconnected and resumed its
// session, and has 20 replies more; it logs how long that took from lost.
func (l *gatewayLoss) waitResumed(t *testing.T, lost time.Time) {
	t.Helper()
	poll.Until(t, poll.Patience, func() error {
		for i, s := range l.streams {
			st := s.d.Stats()
			switch {
			case st.Reconnects == 0:
				return fmt.Errorf("%s has not reconnected", s.id)
			case !s.d.Resumed() || s.d.Session() != l.sessions[i]:
				return fmt.Errorf("%s: session %s resumed %v, was %s", s.id, s.d.Session(), s.d.Resumed(), l.sessions[i])
			}
		}
		return nil
	})
	t.Logf("%d devices resumed on the other gateway %v after the loss", len(l.streams), time.Since(lost).Round(time.Millisecond))
	waitUntil(t, "every device has 20 more replies after the loss", l.progress(20))
}

// finish stops the streams and checks each device: no error, a reply to
// every frame, in order, and a last exchange that counts exactly the
// frames sent before it (no frame handled twice or lost by the shard).
func (l *gatewayLoss) finish(ctx context.Context, t *testing.T) {
	t.Helper()
	l.halt()
	total := 0
	for i, s := range l.streams {
		s.mu.Lock()
		errs, got, n := s.errs, s.got, s.n
		s.mu.Unlock()
		total += got
		if len(errs) > 0 {
			t.Errorf("%s: %s", s.id, strings.Join(errs, "; "))
		}
		if got != n {
			t.Errorf("%s: %d replies to %d reliable frames", s.id, got, n)
		}
		if _, count := exchangeCount(ctx, t, s.d); count != uint64(n+1) {
			t.Errorf("%s: the counter says %d after %d frames and this one", s.id, count, n)
		}
		if !s.d.Resumed() || s.d.Session() != l.sessions[i] {
			t.Errorf("%s: session %s (resumed %v), was %s", s.id, s.d.Session(), s.d.Resumed(), l.sessions[i])
		}
	}
	t.Logf("%d devices, %d reliable frames answered in order across the loss", len(l.streams), total)
}

// rawCounterDevice says HELLO to the counter app through addr as a raw
// device, sends 3 reliable frames and reads their ACK and the 3 replies,
// then ACKs only the first reply: replies 2 and 3 stay in the session's
// outbox on the shard.
func rawCounterDevice(t *testing.T, addr, id string) (*rawDevice, protocol.Welcome) {
	t.Helper()
	d, w := rawResume(t, addr, protocol.Hello{V: 1, ID: id})
	for seq := uint32(1); seq <= 3; seq++ {
		d.write(t, protocol.TypeData, protocol.FlagAckRequested, seq, []byte("tick"))
	}
	d.expect(t, 3, 1, 3)
	d.write(t, protocol.TypeAck, 0, 1, nil)
	return d, w
}

// resumeRedelivered resumes the raw device's session through addr with
// HELLO last 1: WELCOME says resumed, same session, last 3, and replies 2
// and 3 come again, in order, before anything new; the next frame, seq 4,
// is ACKed and counted 4.
func resumeRedelivered(t *testing.T, addr, id string, w1 protocol.Welcome) {
	t.Helper()
	var n *rawDevice
	var w2 protocol.Welcome
	poll.Until(t, poll.Patience, func() error {
		var err error
		n, w2, err = tryResume(addr, protocol.Hello{V: 1, ID: id, Resume: w1.Resume, Last: 1})
		return err
	})
	t.Cleanup(func() { n.nc.Close() })
	if !w2.Resumed || w2.Session != w1.Session || w2.Last != 3 {
		t.Fatalf("raw device's resume on the other gateway: %+v, want resumed, session %s, last 3", w2, w1.Session)
	}
	n.expect(t, 0, 2, 3)
	n.write(t, protocol.TypeData, protocol.FlagAckRequested, 4, []byte("tick"))
	n.expect(t, 4, 4, 4)
}

// expect reads until it has seen ACK ack (0: none expected) and the
// counter's reliable replies with downstream seqs from..to, each counting
// its seq, in order.
func (d *rawDevice) expect(t *testing.T, ack, from, to uint32) {
	t.Helper()
	next, acked := from, ack == 0
	for next <= to || !acked {
		f, err := d.read(poll.Patience)
		if err != nil {
			t.Fatalf("raw device: waiting for ACK %d and replies %d..%d (next %d): %v", ack, from, to, next, err)
		}
		switch f.Type {
		case protocol.TypeAck:
			acked = acked || f.Seq >= ack
		case protocol.TypeData:
			_, count, err := CounterReply(string(f.Payload))
			if err != nil || f.Seq != next || count != uint64(next) || f.Flags&protocol.FlagAckRequested == 0 {
				t.Fatalf("raw device: DATA seq %d flags %d %q, want reliable seq %d counting %d", f.Seq, f.Flags, f.Payload, next, next)
			}
			next++
		}
	}
}

func (d *rawDevice) write(t *testing.T, typ protocol.Type, flags protocol.Flags, seq uint32, p []byte) {
	t.Helper()
	if _, err := d.nc.Write(protocol.AppendFrame(nil, typ, flags, seq, p)); err != nil {
		t.Fatalf("raw device: write %v: %v", typ, err)
	}
}

// rawResume says HELLO h through addr and returns the device once WELCOME
// came, failing the test otherwise.
func rawResume(t *testing.T, addr string, h protocol.Hello) (*rawDevice, protocol.Welcome) {
	t.Helper()
	d, w, err := tryResume(addr, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.nc.Close() })
	return d, w
}

// tryResume says HELLO h through addr and returns the device and the
// WELCOME, or an error (and nothing open) when none came.
func tryResume(addr string, h protocol.Hello) (*rawDevice, protocol.Welcome, error) {
	var w protocol.Welcome
	nc, err := net.DialTimeout("tcp", addr, poll.Patience)
	if err != nil {
		return nil, w, err
	}
	d := &rawDevice{nc}
	p, _ := protocol.EncodeHello(&h)
	if _, err := nc.Write(protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, p)); err != nil {
		nc.Close()
		return nil, w, err
	}
	f, err := d.read(poll.Patience)
	if err == nil && (f.Type != protocol.TypeWelcome || protocol.Unmarshal(f.Payload, &w) != nil) {
		err = fmt.Errorf("%s: want WELCOME, got %v %q", h.ID, f.Type, f.Payload)
	}
	if err != nil {
		nc.Close()
		return nil, w, err
	}
	return d, w, nil
}
