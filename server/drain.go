package server

import (
	"context"
	"fmt"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Close drains the gateway, then stops it. It is idempotent.
//
//	readiness off, new connections and HELLOs get 503
//	  → GOAWAY to every device, spread over the first half of the window
//	    left after retry_ms, each device closed retry_ms after its GOAWAY
//	  → wait for the connections to go, until ctx ends
//	    (or DrainTimeout when ctx has no deadline)
//	  → close the rest, stop the wheel and the admin listener, wait for
//	    every goroutine the gateway started.
//
// It returns an error when connections had to be closed by force.
func (g *Gateway) Close(ctx context.Context) error {
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	select {
	case <-g.closed:
		return g.closeErr
	default:
	}
	defer close(g.closed)
	g.draining.Store(true)
	if !g.started.Load() {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.cfg.DrainTimeout)
		defer cancel()
	}
	g.log.Info("draining", "connections", g.metrics.conns.Load())
	g.goAwayAll(ctx)
	drained := g.waitConns(ctx)
	if !drained {
		g.closeErr = fmt.Errorf("server: drain: %d connections closed by force: %w", g.metrics.conns.Load(), ctx.Err())
	}
	g.forcing.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g.shutdownLoop(sctx)
	if g.remote != nil {
		g.remote.close()
	}
	if g.gossip != nil {
		g.gossip.leave(sctx)
	}
	g.wheel.Stop()
	g.stopAdmin(sctx)
	g.wg.Wait()
	g.log.Info("stopped", "drained", drained)
	return g.closeErr
}

// goAwayAll sends GOAWAY to every attached connection, spread over time so
// that devices do not all reconnect at once.
func (g *Gateway) goAwayAll(ctx context.Context) {
	conns := g.sessions.conns()
	if len(conns) == 0 {
		return
	}
	p, _ := protocol.Marshal(&protocol.GoAway{
		Reason:   "draining",
		RetryMS:  int(g.cfg.GoAwayRetry / time.Millisecond),
		Redirect: append([]string{}, g.cfg.Redirects...),
	})
	deadline, _ := ctx.Deadline()
	spread := (time.Until(deadline) - g.cfg.GoAwayRetry) / 2
	start := time.Now()
	for i, c := range conns {
		if spread > 0 {
			if wait := time.Until(start.Add(spread * time.Duration(i) / time.Duration(len(conns)))); wait > 10*time.Millisecond {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		c.goAway(p)
	}
}

// goAway tells one device to go and arms its close deadline.
func (c *conn) goAway(payload []byte) {
	if !c.ready.Load() || c.goaway.Swap(true) {
		return
	}
	c.send(protocol.TypeGoAway, 0, 0, payload)
	c.g.metrics.goaways.Inc()
	c.g.wheel.Schedule(&c.dl, c.g.cfg.GoAwayRetry)
}

// waitConns polls until no device connection is left or ctx ends.
func (g *Gateway) waitConns(ctx context.Context) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for g.metrics.conns.Load() > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// shutdownLoop stops netpoll's event loop. Shutdown does nothing when Serve
// has not yet registered its server (a Close right after Start), and Serve
// would then wait forever, so it is repeated until Serve has returned.
func (g *Gateway) shutdownLoop(ctx context.Context) {
	for {
		_ = g.evl.Shutdown(ctx)
		select {
		case <-g.serveDone:
			return
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}
