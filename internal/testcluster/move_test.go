package testcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
)

// moveWait bounds every wait of the move tests.
const moveWait = poll.Patience

// waitUntil polls cond until it holds or moveWait passed (then it fails
// the test).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, moveWait, func() error {
		if !cond() {
			return errors.New(what)
		}
		return nil
	})
}

// devicesOn returns n device ids of prefix that the ring of the running
// shards places on shard, and n placed elsewhere.
func devicesOn(c *Cluster, prefix, shard string, n int) (on, off []string) {
	for i := 0; len(on) < n || len(off) < n; i++ {
		id := fmt.Sprintf("%s-%d", prefix, i)
		if c.Owner(id) == shard {
			if len(on) < n {
				on = append(on, id)
			}
		} else if len(off) < n {
			off = append(off, id)
		}
	}
	return on, off
}

// TestJoinRebalancesLiveSessions: DESIGN.md "shard join": 30 devices hold
// sessions on 2 counter shards through 2 gateways; a third shard joins.
// Once the rebalance settled, every session lives on the shard the new
// ring names, exactly the sessions whose owner changed were moved (the
// new shard opened those and no others), and from the device side: no
// reconnect, and each device's counter goes on from where it was.
func TestJoinRebalancesLiveSessions(t *testing.T) {
	c := New(t, Options{Gateways: 2, Shards: 2, App: "counter", Logger: debugLog()})
	c.Converge()
	ctx, cancel := context.WithTimeout(context.Background(), 2*moveWait)
	defer cancel()
	addrs := c.Addrs()
	devs := map[string]*client.Client{}
	for i := range 30 {
		id := fmt.Sprintf("joiner-%d", i)
		d := Dial(ctx, t, client.Config{Addr: addrs[i%len(addrs)], ID: id})
		for range 2 {
			served(ctx, t, d)
		}
		devs[id] = d
	}

	c.StartShard("s2")
	c.Converge()
	var toNew []string
	for id := range devs {
		if c.Owner(id) == "s2" {
			toNew = append(toNew, id)
		}
	}
	if len(toNew) == 0 {
		t.Fatal("no device of 30 is placed on the new shard")
	}
	// Settled: every session attached on its owner, and each shard's
	// table holds exactly the sessions of the devices the ring places on
	// it (a moved session is gone from its old shard). The wait also rides
	// out a ring that flaps while gossip is slow (the moves follow it).
	waitUntil(t, "every session lives where the ring says, and only there", func() bool {
		perShard := map[string]int64{}
		for id := range devs {
			owner := c.Owner(id)
			s := c.ShardByName(owner).Session(id)
			if s == nil || !s.Attached() {
				return false
			}
			perShard[owner]++
		}
		for _, name := range c.Active() {
			if c.ShardByName(name).Stats().Sessions != perShard[name] {
				return false
			}
		}
		return true
	})
	// From the device side: each is served by its ring owner, its counter
	// goes on by one per message (the state moved with the session), and
	// its connection was never cut.
	for id, d := range devs {
		reply, err := Exchange(ctx, d, "tick")
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		shard, count, _ := CounterReply(reply)
		if want := c.Owner(id); shard != want || count != 3 {
			t.Errorf("%s after the join: %q, want %q with count 3", id, reply, want)
		}
		if n := d.Stats().Reconnects; n != 0 {
			t.Errorf("%s reconnected %d times", id, n)
		}
	}
	t.Logf("%d of %d sessions moved to the new shard", len(toNew), len(devs))
}

// stream is one device sending reliable DATA to the counter app as fast
// as its window allows, and checking every reply.
type stream struct {
	id   string
	d    *client.Client
	sent chan struct{} // closed when the sender returned
	mu   sync.Mutex
	n    int      // reliable frames sent
	got  int      // replies, each the next count
	last string   // shard of the last reply
	errs []string // what went wrong
	// repeatOK: a reply may repeat a count already seen (a frame handled
	// again after a shard crash, docs/guarantees.md); repeats counts them.
	repeatOK bool
	repeats  int
}

func (s *stream) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 5 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

func (s *stream) replies() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

// progressOf returns, for n, a condition that holds once every stream
// has n more replies than when it was made.
func progressOf(streams []*stream) func(n int) func() bool {
	return func(n int) func() bool {
		base := make([]int, len(streams))
		for i, s := range streams {
			base[i] = s.replies()
		}
		return func() bool {
			for i, s := range streams {
				if s.replies() < base[i]+n {
					return false
				}
			}
			return true
		}
	}
}

// check reports what went wrong with a stream that has stopped: errors,
// a count per reliable frame, served last by shard want, no reconnect
// (and, with noResends, no resend). It returns its replies and repeats.
func (s *stream) check(t *testing.T, want string, noResends bool) (got, repeats int) {
	t.Helper()
	s.mu.Lock()
	if len(s.errs) > 0 {
		t.Errorf("%s: %s", s.id, strings.Join(s.errs, "; "))
	}
	if s.got != s.n {
		t.Errorf("%s: %d replies to %d reliable frames", s.id, s.got, s.n)
	}
	if s.last != want {
		t.Errorf("%s: last served by %s, ring says %s", s.id, s.last, want)
	}
	got, repeats = s.got, s.repeats
	s.mu.Unlock()
	if st := s.d.Stats(); st.Reconnects != 0 || (noResends && st.Resends != 0) {
		t.Errorf("%s: %d reconnects, %d resends; want none", s.id, st.Reconnects, st.Resends)
	}
	return got, repeats
}

// send sends until stop is closed.
func (s *stream) send(ctx context.Context, stop <-chan struct{}) {
	defer close(s.sent)
	for {
		select {
		case <-stop:
			return
		default:
		}
		if err := s.d.Send(ctx, []byte("tick"), true); err != nil {
			s.fail("send: %v", err)
			return
		}
		s.mu.Lock()
		s.n++
		s.mu.Unlock()
	}
}

// recv checks each reply: count n+1 after n, nothing lost, duplicated or
// reordered (with repeatOK, a count seen before is counted as a repeat). It returns once the sender returned and every frame it sent
// is answered.
func (s *stream) recv(ctx context.Context) {
	for {
		select {
		case <-s.sent:
			s.mu.Lock()
			done := s.got == s.n
			s.mu.Unlock()
			if done {
				return
			}
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		m, err := s.d.Recv(rctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			continue
		}
		if err != nil {
			s.fail("recv: %v", err)
			return
		}
		shard, count, err := CounterReply(string(m.Payload))
		s.mu.Lock()
		if err == nil && s.repeatOK && count >= 1 && count <= uint64(s.got) && m.Reliable {
			s.repeats++
			s.mu.Unlock()
			continue
		}
		if err != nil || count != uint64(s.got+1) || !m.Reliable {
			s.mu.Unlock()
			s.fail("reply %q (reliable %v) after %d replies", m.Payload, m.Reliable, s.got)
			return
		}
		s.got++
		s.last = shard
		s.mu.Unlock()
	}
}

// TestDrainReliableStreamUninterrupted: DESIGN.md "planned shard leave"
// under traffic: 24 devices through 2 gateways keep sending reliable DATA
// to 3 counter shards, pipelined, while the shard that holds half of them
// drains. Drain returns once no gateway holds a session there, and from
// the device side: no device is disconnected or sees an error, every
// reliable frame is answered exactly once and in order (the counter's
// replies count 1, 2, 3, ... with no gap or repeat across the move: its
// state moved with the session), and the moved devices end up served by
// the shard the ring names without the drained one.
func TestDrainReliableStreamUninterrupted(t *testing.T) {
	c := New(t, Options{Gateways: 2, Shards: 3, App: "counter"})
	c.Converge()
	ctx, cancel := context.WithTimeout(context.Background(), 3*moveWait)
	defer cancel()
	const drained = 0
	name := c.Shard(drained).Shard()
	on, off := devicesOn(c, "streamer", name, 12)
	addrs := c.Addrs()
	var streams []*stream
	for i, id := range append(on, off...) {
		d := Dial(ctx, t, client.Config{Addr: addrs[i%len(addrs)], ID: id, MaxPending: 16})
		streams = append(streams, &stream{id: id, d: d, sent: make(chan struct{})})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Go(func() { s.send(ctx, stop) })
		wg.Go(func() { s.recv(ctx) })
	}
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			cancel()
			wg.Wait()
		}
	}()
	progress := progressOf(streams)
	waitUntil(t, "every device has 20 replies before the drain", progress(20))
	dctx, dcancel := context.WithTimeout(ctx, moveWait)
	err := c.DrainShard(dctx, drained)
	dcancel()
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	waitUntil(t, "every device has 20 more replies after the drain", progress(20))
	close(stop)
	stopped = true
	wg.Wait()

	total := 0
	for _, s := range streams {
		got, _ := s.check(t, c.Owner(s.id), true)
		total += got
	}
	if n := c.Shard(drained).Stats().Sessions; n != 0 {
		t.Errorf("the drained shard still has %d sessions", n)
	}
	t.Logf("%d devices, %d reliable frames answered in order, %d sessions moved off %s",
		len(streams), total, len(on), name)
}

// TestPushDuringMoveReachesDeviceOrFails: a third shard pushes numbered
// reliable messages to a device without pause while the device's shard
// drains and its session moves. Every Push that returned nil reaches the
// device, in order, once; a Push that could not be delivered returned an
// error (and is counted in the pushing shard's Stats.PushFailed).
func TestPushDuringMoveReachesDeviceOrFails(t *testing.T) {
	c := New(t, Options{Gateways: 1, Shards: 3, App: "counter"})
	c.Converge()
	ctx, cancel := context.WithTimeout(context.Background(), 3*moveWait)
	defer cancel()
	from, to, pusher := "", "", ""
	id := ""
	for i := 0; pusher == ""; i++ {
		id = fmt.Sprintf("pushed-%d", i)
		from = c.Owner(id)
		rest := slices.DeleteFunc(c.Active(), func(s string) bool { return s == from })
		next, err := Ring(t, rest...).Owner(id)
		if err != nil {
			t.Fatal(err)
		}
		to = next.Name
		for _, s := range rest {
			if s != to {
				pusher = s
			}
		}
	}
	d := Dial(ctx, t, client.Config{Addr: c.Addrs()[0], ID: id, RecvBuffer: 1 << 14})
	src := c.ShardByName(pusher)

	var mu sync.Mutex
	var ok []string
	maybe := map[string]bool{} // ErrForwardTimeout: no answer, may have been delivered
	failed := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			p := fmt.Sprintf("push-%d", i)
			err := src.Push(id, []byte(p), true)
			mu.Lock()
			switch {
			case err == nil:
				ok = append(ok, p)
			case errors.Is(err, backend.ErrForwardTimeout):
				maybe[p] = true
				failed++
			default:
				failed++
			}
			mu.Unlock()
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ok)
	}
	waitUntil(t, "20 pushes before the drain", func() bool { return count() >= 20 })
	dctx, dcancel := context.WithTimeout(ctx, moveWait)
	err := c.DrainShard(dctx, c.ShardIndex(from))
	dcancel()
	if err != nil {
		close(stop)
		<-done
		t.Fatalf("drain: %v", err)
	}
	after := count()
	waitUntil(t, "20 pushes after the drain", func() bool { return count() >= after+20 })
	close(stop)
	<-done

	mu.Lock()
	want := append([]string(nil), ok...)
	nfailed := failed
	mu.Unlock()
	// The pushes that succeeded arrive in the order they were made, each
	// once; one that timed out waiting for the owner's answer may arrive
	// too (in order, once); one that failed otherwise must not.
	var got []string
	for n := 0; n < len(want); {
		m, err := d.Recv(ctx)
		if err != nil {
			t.Fatalf("after %d of %d pushes: %v", n, len(want), err)
		}
		p := string(m.Payload)
		if maybe[p] {
			delete(maybe, p)
			continue
		}
		got = append(got, p)
		n++
	}
	if !slices.Equal(got, want) {
		t.Errorf("device received %d messages that differ from the %d successful pushes (first difference at %d)",
			len(got), len(want), firstDiff(got, want))
	}
	if st := src.Stats(); st.PushFailed != uint64(nfailed) {
		t.Errorf("PushFailed = %d, %d pushes returned an error", st.PushFailed, nfailed)
	}
	if n := d.Stats().Reconnects; n != 0 {
		t.Errorf("device reconnected %d times", n)
	}
	if s := c.ShardByName(to).Session(id); s == nil || !s.Attached() {
		t.Errorf("the session is not attached on %s, the ring's owner", to)
	}
	t.Logf("%d pushes delivered, %d returned an error; session moved %s → %s, pushed from %s",
		len(want), nfailed, from, to, pusher)
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func debugLog() *slog.Logger {
	if os.Getenv("MOVE_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
