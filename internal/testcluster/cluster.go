package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/router"
	"github.com/switchyard-gw/switchyard/server"
)

// Cluster is an in-process cluster: backend shards and gateways of this
// test, joined by gossip on loopback. Its methods are safe for concurrent
// use; the ones that fail the test call t.Fatal and so belong to the test
// goroutine.
type Cluster struct {
	t       testing.TB
	opts    Options
	keys    keys
	handler func() backend.Handler
	log     *slog.Logger

	mu       sync.Mutex
	gateways []*gatewayMember
	shards   []*shardMember
	seq      int // makes gossip member names unique
}

// state is where a member is in its life.
type state int

const (
	running  state = iota // serving; a shard counts in the ring
	draining              // a shard that announced draining: out of the ring
	stopped               // stopped or killed
)

type gatewayMember struct {
	gw    *server.Gateway
	state state
}

type shardMember struct {
	name  string
	srv   *backend.Server
	state state
}

// New starts opts.Shards shards, then opts.Gateways gateways, each joining
// the gossip through the first member's address, and stops everything in
// t.Cleanup. It does not wait for convergence (see WaitConverged).
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	h, err := opts.handler()
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, opts: opts, keys: newKeys(), handler: h, log: opts.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	t.Cleanup(c.close)
	for i := range opts.Shards {
		c.StartShard(opts.shardName(i))
	}
	for range opts.Gateways {
		c.StartGateway()
	}
	return c
}

// gossipConfig is a member's gossip config: loopback, encrypted, fast.
func (c *Cluster) gossipConfig(role string) *cluster.Config {
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("%s-%d", role, c.seq)
	c.mu.Unlock()
	var seeds []string
	if s := c.seed(); s != "" {
		seeds = []string{s}
	}
	return &cluster.Config{Name: name, Bind: "127.0.0.1:0", Seeds: seeds, Keys: [][]byte{c.keys.gossip},
		Timing: cluster.FastTiming(), Logger: c.log}
}

// seed is the gossip address of the first member still up: shards in
// start order, then gateways ("" when there is none).
func (c *Cluster) seed() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.shards {
		if s.state != stopped {
			return s.srv.GossipAddr()
		}
	}
	for _, g := range c.gateways {
		if g.state != stopped {
			return g.gw.GossipAddr()
		}
	}
	return ""
}

// StartGateway starts one more gateway and returns its index.
func (c *Cluster) StartGateway() int {
	c.t.Helper()
	c.mu.Lock()
	i := len(c.gateways)
	c.mu.Unlock()
	cfg := server.Config{
		Listen:      "127.0.0.1:0",
		AdminListen: "127.0.0.1:0",
		Node:        fmt.Sprintf("gw%d", i),
		ClusterKeys: [][]byte{c.keys.cluster},
		LinkKeys:    [][]byte{c.keys.link},
		GoAwayRetry: DefaultGoAwayRetry,
		Cluster:     c.gossipConfig(fmt.Sprintf("gw%d", i)),
		Logger:      c.log,
		LinkTimeout: DefaultLinkTimeout,
	}
	if c.opts.GatewayConfig != nil {
		c.opts.GatewayConfig(i, &cfg)
	}
	// As the binary does, so that in-process gateways keep production's
	// per-connection memory (the first call tunes, later ones only report).
	if err := server.TuneNetpoll(); err != nil {
		c.t.Fatalf("testcluster: %v", err)
	}
	g, err := server.New(cfg)
	if err != nil {
		c.t.Fatalf("testcluster: gateway %d: %v", i, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultConvergeWait)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		c.t.Fatalf("testcluster: gateway %d: %v", i, err)
	}
	c.mu.Lock()
	c.gateways = append(c.gateways, &gatewayMember{gw: g})
	c.mu.Unlock()
	if err := waitServing(g.Addr().String()); err != nil {
		c.t.Fatalf("testcluster: gateway %d: %v", i, err)
	}
	return i
}

// waitServing returns once the gateway's event loop answers a connection.
//
// Gateway.Close hangs forever when it comes before netpoll's Serve
// goroutine has installed its server: EventLoop.Shutdown then does
// nothing and Serve waits for a quit that never comes. A gateway that
// answered once is past that point. The probe sends a PING before any
// HELLO, which the gateway answers with ERROR 400 (counted in its
// metrics as one bad request).
func waitServing(addr string) error {
	nc, err := net.DialTimeout("tcp", addr, DefaultStopTimeout)
	if err != nil {
		return fmt.Errorf("not serving: %w", err)
	}
	defer nc.Close()
	if _, err := nc.Write(protocol.AppendFrame(nil, protocol.TypePing, 0, 0, nil)); err != nil {
		return fmt.Errorf("not serving: %w", err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(DefaultStopTimeout))
	var b [1]byte
	if _, err := nc.Read(b[:]); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("not serving: %w", err)
	}
	return nil
}

// StartShard starts a shard named name on a new link address and returns
// it. The name may be one of a stopped shard (a restart elsewhere); a
// running shard of that name fails the test.
func (c *Cluster) StartShard(name string) *backend.Server {
	c.t.Helper()
	return c.StartShardAt(name, "127.0.0.1:0")
}

// StartShardAt starts a shard named name with its link on link, e.g. the
// address of a stopped shard of that name (a restart in place).
func (c *Cluster) StartShardAt(name, link string) *backend.Server {
	c.t.Helper()
	if c.ShardByName(name) != nil {
		c.t.Fatalf("testcluster: shard %s is already running", name)
	}
	cfg := backend.Config{Shard: name, Link: link, ClusterKeys: [][]byte{c.keys.link}, Handler: c.handler(),
		Gossip: c.gossipConfig("shard-" + name), Logger: c.log, LinkTimeout: DefaultLinkTimeout}
	if c.opts.ShardConfig != nil {
		c.opts.ShardConfig(name, &cfg)
	}
	srv, err := backend.New(cfg)
	if err != nil {
		c.t.Fatalf("testcluster: shard %s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultConvergeWait)
	defer cancel()
	if err := srv.Start(ctx); err != nil {
		closeCtx, cancel := context.WithTimeout(context.Background(), DefaultStopTimeout)
		defer cancel()
		_ = srv.Close(closeCtx)
		c.t.Fatalf("testcluster: shard %s: %v", name, err)
	}
	c.mu.Lock()
	c.shards = append(c.shards, &shardMember{name: name, srv: srv})
	c.mu.Unlock()
	return srv
}

// Gateway returns gateway i (also once stopped).
func (c *Cluster) Gateway(i int) *server.Gateway {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gateways[i].gw
}

// Shard returns shard i in start order (also once stopped).
func (c *Cluster) Shard(i int) *backend.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shards[i].srv
}

// ShardByName returns the shard named name that is not stopped, or nil.
func (c *Cluster) ShardByName(name string) *backend.Server {
	i := c.ShardIndex(name)
	if i < 0 {
		return nil
	}
	return c.Shard(i)
}

// ShardIndex returns the index of the shard named name that is not
// stopped, or -1.
func (c *Cluster) ShardIndex(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.shards {
		if s.name == name && s.state != stopped {
			return i
		}
	}
	return -1
}

// Addrs returns the device addresses of the running gateways, in index
// order.
func (c *Cluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, g := range c.gateways {
		if g.state == running {
			out = append(out, g.gw.Addr().String())
		}
	}
	return out
}

// Active returns the names of the shards in the ring (running, not
// draining), sorted.
func (c *Cluster) Active() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.shards {
		if s.state == running {
			out = append(out, s.name)
		}
	}
	sort.Strings(out)
	return out
}

// Ring returns the ring every converged member holds: the active shards
// under the default router config.
func (c *Cluster) Ring() *router.Ring {
	c.t.Helper()
	return Ring(c.t, c.Active()...)
}

// Owner returns the name of the shard that the converged ring places
// deviceID on.
func (c *Cluster) Owner(deviceID string) string {
	c.t.Helper()
	s, err := c.Ring().Owner(deviceID)
	if err != nil {
		c.t.Fatalf("testcluster: owner of %s: %v", deviceID, err)
	}
	return s.Name
}

// Ring builds the ring of the named shards under the default router
// config, the one gateways and shards use.
func Ring(t testing.TB, shards ...string) *router.Ring {
	t.Helper()
	var ss []router.Shard
	for _, n := range shards {
		ss = append(ss, router.Shard{Name: n})
	}
	r, err := router.NewRing(router.Config{}, ss)
	if err != nil {
		t.Fatalf("testcluster: ring %v: %v", shards, err)
	}
	return r
}

// WaitConverged polls until every running gateway's ring holds as many
// shards as are active and every shard that is up (draining included)
// has a ring of that size, or ctx ends.
func (c *Cluster) WaitConverged(ctx context.Context) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		why := c.divergence()
		if why == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testcluster: not converged: %s: %w", why, ctx.Err())
		case <-t.C:
		}
	}
}

// Converge is WaitConverged bounded by DefaultConvergeWait; it fails the
// test when the cluster does not converge.
func (c *Cluster) Converge() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultConvergeWait)
	defer cancel()
	if err := c.WaitConverged(ctx); err != nil {
		c.t.Fatal(err)
	}
}

// divergence describes what is not converged yet ("" when all is).
func (c *Cluster) divergence() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	want := 0
	for _, s := range c.shards {
		if s.state == running {
			want++
		}
	}
	var bad []string
	for i, g := range c.gateways {
		if n := g.gw.Shards(); g.state == running && n != want {
			bad = append(bad, fmt.Sprintf("gateway %d has %d", i, n))
		}
	}
	for _, s := range c.shards {
		if n := s.srv.RingLen(); s.state != stopped && n != want {
			bad = append(bad, fmt.Sprintf("shard %s has %d", s.name, n))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return fmt.Sprintf("want %d shards in every ring; %s", want, strings.Join(bad, ", "))
}

// StopGateway drains and closes gateway i (GOAWAY to its devices, then
// leave), bounded by DefaultStopTimeout.
func (c *Cluster) StopGateway(i int) {
	c.t.Helper()
	c.mu.Lock()
	g := c.gateways[i]
	was := g.state
	g.state = stopped
	c.mu.Unlock()
	if was == stopped {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultStopTimeout)
	defer cancel()
	if err := g.gw.Close(ctx); err != nil {
		c.t.Errorf("testcluster: stop gateway %d: %v", i, err)
	}
}

// close stops every member still up: gateways first, then shards, one
// at a time. (Members leaving the gossip together wait out their leave
// timeouts: memberlist finishes a leave broadcast only by sending it to a
// live peer, and the peers are leaving too.)
func (c *Cluster) close() {
	c.mu.Lock()
	var stops []func(context.Context) error
	for _, g := range c.gateways {
		if g.state != stopped {
			stops = append(stops, g.gw.Close)
		}
		g.state = stopped
	}
	for _, s := range c.shards {
		if s.state != stopped {
			stops = append(stops, s.srv.Close)
		}
		s.state = stopped
	}
	c.mu.Unlock()
	var errs []error
	for _, stop := range stops {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultStopTimeout)
		errs = append(errs, stop(ctx))
		cancel()
	}
	if err := errors.Join(errs...); err != nil {
		c.t.Logf("testcluster: cleanup: %v", err)
	}
}
