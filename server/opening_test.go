package server

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// TestCloseWhileOpening closes devices at the moment their shard answers
// Open, while the gateway replays the frames they sent before WELCOME
// (opened, on the link reader). The close callback must not free those
// frames under the replay (-race reports it), and every session must still
// be closed on the shard and leave the gateway's tables.
func TestCloseWhileOpening(t *testing.T) {
	s := startFakeShard(t, "s1", false)
	g := startGateway(t, Config{Backends: s.dir(), LinkKeys: [][]byte{fakeShardKey}, Rate: -1})
	// The interleaving is up to the scheduler: several rounds make the
	// overlap (and so the race report, before the fix) near certain.
	for round := range 4 {
		closeWhileOpening(t, g, s, round)
	}
}

func closeWhileOpening(t *testing.T, g *Gateway, s *fakeShard, round int) {
	t.Helper()
	const devices = 24
	framesBefore := g.metrics.framesReceived()
	// HELLO and ~60 KB of DATA in one write: all of it is held while the
	// shard binds the session, and replayed by opened.
	var burst []byte
	for len(burst)+protocol.FrameSize(0) < maxPending-protocol.HeaderSize {
		burst = protocol.AppendFrame(burst, protocol.TypeData, 0, 0, nil)
	}
	type pendingOpen struct {
		d   *dev
		env fakeEnv
	}
	opens := make([]pendingOpen, 0, devices)
	for i := range devices {
		d := dial(t, g)
		hello, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: fmt.Sprintf("dev-%d-%d", round, i)})
		d.write(append(protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, hello), burst...))
		env := s.next(t, protocol.LinkOpen)
		opens = append(opens, pendingOpen{d, env})
	}
	// Let the gateway take in each device's whole burst before answering.
	waitFor(t, "bursts read", func() bool {
		return g.metrics.framesReceived()-framesBefore >= uint64(devices*(1+len(burst)/protocol.HeaderSize))
	})

	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, o := range opens {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			o.env.l.opened(o.env.e.Session)
		}()
		go func() {
			defer wg.Done()
			<-start
			_ = o.d.nc.(*net.TCPConn).SetLinger(0)
			o.d.nc.Close()
		}()
	}
	close(start)
	wg.Wait()

	closed := map[protocol.SessionID]bool{}
	deadline := time.Now().Add(poll.Patience)
	for len(closed) < devices {
		select {
		case env := <-s.envs:
			if env.e.Kind == protocol.LinkClose {
				closed[env.e.Session] = true
			}
		case <-time.After(time.Until(deadline)):
			t.Fatalf("shard saw Close for %d of %d sessions", len(closed), devices)
		}
	}
	waitFor(t, "connections gone", func() bool { return g.metrics.conns.Load() == 0 })
}
