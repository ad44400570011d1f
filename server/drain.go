package server

import (
	"context"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/protocol"
)

// Close drains the gateway, then stops it. It is idempotent.
//
//	readiness off, new connections and HELLOs get 503; the gateway
//	announces draining in gossip
//	  → GOAWAY to every device, spread over the first half of the window
//	    (redirect: Config.Redirects, then the other live gateways that
//	    are not draining, as gossip knows them)
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
		ctx, cancel = context.WithTimeout(ctx, g.live.Load().drainTimeout)
		defer cancel()
	}
	g.log.Info("draining", "connections", g.metrics.conns.Load())
	g.announceDraining()
	g.goAwayAll(ctx)
	drained := g.waitConns(ctx)
	if !drained {
		g.closeErr = fmt.Errorf("server: drain: %d connections closed by force: %w", g.metrics.conns.Load(), ctx.Err())
	}
	g.forcing.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	g.shutdownLoop(sctx)
	g.stopTLS()
	if g.remote != nil {
		g.remote.Close()
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
	targets := g.redirects()
	retry := g.live.Load().goAwayRetry
	deadline, _ := ctx.Deadline()
	spread := (time.Until(deadline) - retry) / 2
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
		c.goAway(goAwayPayload(retry, targets, i))
	}
}

// goAwayPayload is the GOAWAY for the i-th device: the redirect list is
// rotated by i, so that devices, which try it in order, spread over the
// other gateways instead of all landing on the first.
func goAwayPayload(retry time.Duration, targets []string, i int) []byte {
	redirect := make([]string, 0, len(targets))
	for j := range targets {
		redirect = append(redirect, targets[(i+j)%len(targets)])
	}
	p, _ := protocol.Marshal(&protocol.GoAway{Reason: "draining", RetryMS: int(retry / time.Millisecond), Redirect: redirect})
	return p
}

// redirects lists where GOAWAY sends devices: the configured Redirects,
// then the device addresses of the other gateways that gossip shows alive
// and not draining (a draining peer would only send them on again).
func (g *Gateway) redirects() []string {
	out := append([]string{}, g.live.Load().redirects...)
	if g.gossip == nil {
		return out
	}
	self := g.gossip.node.Name()
	for _, m := range g.gossip.node.Members() {
		if m.Name == self || !m.Alive || m.Meta.Role != cluster.RoleGateway || m.Meta.State != cluster.StateActive {
			continue
		}
		if addr := deviceAddr(m); addr != "" && !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	return out
}

// deviceAddr is where devices reach gateway m: the device address it
// announces, with its gossip address's host when it listens on all
// interfaces (0.0.0.0:7400 is no address to send a device to).
func deviceAddr(m cluster.Member) string {
	host, port, err := net.SplitHostPort(m.Meta.Link)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if host, _, err = net.SplitHostPort(m.Addr); err != nil {
			return ""
		}
	}
	return net.JoinHostPort(host, port)
}

// announceDraining tells the cluster that this gateway drains, so that
// other draining gateways do not redirect devices here. The broadcast is
// not waited for: GOAWAY must not wait on gossip.
func (g *Gateway) announceDraining() {
	if g.gossip == nil {
		return
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := g.gossip.node.SetDraining(); err != nil {
			g.log.Warn("announcing the drain to the cluster", "err", err)
		}
	}()
}

// goAway tells one device to go and arms its close deadline.
func (c *conn) goAway(payload []byte) {
	if !c.ready.Load() || c.goaway.Swap(true) {
		return
	}
	c.send(protocol.TypeGoAway, 0, 0, payload)
	c.g.metrics.goaways.Inc()
	c.g.wheel.Schedule(&c.dl, c.g.live.Load().goAwayRetry)
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
