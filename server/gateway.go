package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/switchyard-gw/switchyard/internal/timewheel"
	"github.com/switchyard-gw/switchyard/internal/trace"
	"github.com/switchyard-gw/switchyard/router"
	"github.com/switchyard-gw/switchyard/server/remote"
)

// Netpoll buffer tuning, process-wide (netpoll keeps it in globals). A new
// connection's input buffer starts at inputBufferSize and grows only while
// a burst is being read; an idle connection keeps one such node. 256 bytes
// holds a HELLO and the small frames devices send; larger reads double the
// read size per connection as needed. Measured: 2,971 B per idle
// authenticated session with 256, 3,514 B with 512, at the same CPU per
// frame (docs/benchmarks.md).
const (
	inputBufferSize = 256
	linkBufferCap   = 256
)

// ErrClosed is returned by Start after Close.
var ErrClosed = errors.New("server: gateway closed")

// Gateway is one Switchyard gateway: the device listener on netpoll, the
// session table, the timing wheel and the admin HTTP listener.
//
// Goroutines it owns: the timing wheel's sweeper, netpoll's Serve loop, the
// admin HTTP server. Connections own none; netpoll runs their handlers on its
// pool only while they have input.
type Gateway struct {
	cfg      Config
	log      *slog.Logger
	metrics  *gatewayMetrics
	wheel    *timewheel.Wheel
	sessions *sessionTable
	backend  backend         // the embedded echo, or remote
	remote   *remote.Backend // the shard side; nil with the embedded echo
	ring     *router.Router  // with Cluster; its Placer applies the canary rules
	rulesMu  sync.Mutex      // serialises SetRules
	rules    []router.Rule   // the canary rules in force; under rulesMu
	gossip   *gossip         // with Cluster, once started
	tls      *tlsFront       // with TLSCertFile: the device listener's TLS (tls.go)

	live        atomic.Pointer[live] // the reloadable settings (reload.go)
	reloadMu    sync.Mutex           // one Reload at a time; guards running
	running     Config               // cfg with the reloads applied: what the next reload compares with
	randomKey   []byte               // the resume key while no ClusterKeys are configured
	refusals    *refusalLog
	idle        time.Duration // 3 × hb
	idleTicks   int64
	idleQuantum int64 // idle deadlines are rounded up to a multiple of this many ticks (idleAt)
	quietTicks  int64 // a device silent this long gets small input nodes again (netpoll_tune.go)
	maxUnread   int   // cfg.maxUnread()
	acceptLimit bucket
	shed        shedState  // the handshake backlog's estimate (shed.go)
	penalty     penaltyBox // sources that flooded (penalty.go)

	evl     netpoll.EventLoop
	ln      net.Listener
	lnFD    atomic.Int32 // ln's descriptor once bound: its accept queue's length (shed.go)
	adminLn net.Listener
	admin   *http.Server
	adm     adminState // admin.go
	// deferred: the listener holds a silent connection deferAcceptSeconds
	// before accepting it (TCP_DEFER_ACCEPT), which its handshake timeout
	// makes up for (handshakeTimeout). Set before the event loop starts.
	deferred bool

	trace       trace.Table     // devices traced here (trace.go)
	disconnects *disconnectRing // recent disconnects (trace.go)

	draining atomic.Bool
	forcing  atomic.Bool // Close is closing what is left
	started  atomic.Bool
	closed   chan struct{}
	closeMu  sync.Mutex
	closeErr error
	wg       sync.WaitGroup

	serveDone chan struct{} // closed when netpoll's Serve returned

	backlogMu sync.Mutex
	backlog   []*conn
	spare     []*conn // wheel goroutine only
}

// New validates cfg and returns a gateway that is not started.
func New(cfg Config) (*Gateway, error) {
	cfg = cfg.provision()
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "gateway"),
		metrics: newGatewayMetrics(cfg.Version, cfg.Commit),
		backend: echoBackend{maxOutbox: cfg.MaxOutbox},
		idle:    3 * cfg.Heartbeat,
		closed:  make(chan struct{}),
	}
	g.refusals = newRefusalLog(g.log, refusalLines, time.Now)
	g.disconnects = newDisconnectRing(cfg.DisconnectRing)
	if cfg.LevelVar != nil {
		cfg.LevelVar.Set(cfg.LogLevel)
	}
	if cfg.Cluster != nil {
		placer, err := router.NewRules(cfg.Canary)
		if err != nil {
			return nil, fmt.Errorf("server: canary: %w", err)
		}
		r, err := router.New(router.Config{}, placer)
		if err != nil {
			return nil, fmt.Errorf("server: ring: %w", err)
		}
		g.ring = r
		g.rules = cloneRules(cfg.Canary)
		cfg.Backends = remote.RingDirectory(r)
	}
	if cfg.Backends != nil {
		r, err := remote.New(g.remoteConfig(cfg.Backends))
		if err != nil {
			return nil, err
		}
		g.remote = r
		g.backend = r
	}
	front, err := newTLSFront(&cfg, g.metrics.tls)
	if err != nil {
		return nil, err
	}
	g.tls = front
	g.adm.init(g.metrics.set)
	g.metrics.set.RegisterMetricsWriter(g.writeClusterMetrics)
	g.metrics.set.NewGauge("switchyard_accept_queue_seconds", func() float64 { return float64(g.shed.queueAge.Load()) / 1e9 })
	g.metrics.set.NewGauge("switchyard_accept_queue_length", func() float64 { return float64(listenQueue(int(g.lnFD.Load()))) })
	g.metrics.set.NewGauge("switchyard_penalized_sources", func() float64 {
		return float64(g.penalty.sweep(g.wheel.Now(), g.live.Load().penaltyTicks))
	})
	g.metrics.set.NewGauge("switchyard_handshakes_waiting", func() float64 { return float64(g.shed.waiting.Load()) })
	g.metrics.set.NewGauge("switchyard_handshake_wait_seconds", func() float64 {
		return g.shed.wait(time.Duration(g.live.Load().shedLag)).Seconds()
	})
	g.adm.configHash.Store(&cfg.ConfigHash)
	g.wheel = timewheel.New(0, 0, g.retryBacklog)
	g.sessions = newSessionTable(g)
	g.idleTicks = g.wheel.Ticks(g.idle)
	g.idleQuantum = max(1, min(g.wheel.Ticks(time.Second), g.idleTicks/16))
	g.quietTicks = g.wheel.Ticks(quietGap)
	g.maxUnread = cfg.maxUnread()
	g.randomKey = randomResumeKey()
	g.live.Store(g.newLive(&g.cfg, g.randomKey))
	g.running = g.cfg
	g.acceptLimit.tokens = float64(cfg.AcceptBurst)
	g.acceptLimit.set(cfg.AcceptRate, cfg.AcceptBurst, g.wheel.Tick())
	return g, nil
}

// Start binds the listeners and starts serving.
func (g *Gateway) Start(ctx context.Context) error {
	select {
	case <-g.closed:
		return ErrClosed
	default:
	}
	if g.started.Swap(true) {
		return errors.New("server: gateway already started")
	}
	ln, err := netpoll.CreateListener("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", g.cfg.Listen, err)
	}
	g.lnFD.Store(int32(ln.Fd()))
	if err := deferAccept(ln.Fd()); err != nil {
		g.log.Warn("TCP_DEFER_ACCEPT not set on the device listener; the accept lag includes the devices' own delay", "err", err)
	} else {
		g.deferred = true
	}
	evl, err := netpoll.NewEventLoop(g.onRequest, netpoll.WithOnPrepare(g.onPrepare), g.acceptBatch())
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: event loop: %w", err)
	}
	if err := g.startAdmin(); err != nil {
		ln.Close()
		return err
	}
	g.ln, g.evl = ln, evl
	if g.remote != nil {
		// Before the cluster: joining it may dial links, which name the
		// gateway with the device address bound above.
		g.remote.Start(g.linkName())
	}
	if g.cfg.Cluster != nil {
		if err := g.joinCluster(ctx); err != nil {
			if g.remote != nil {
				g.remote.Close()
			}
			ln.Close()
			g.stopAdmin(ctx)
			return err
		}
	}
	g.wheel.Start()
	g.startTLS()
	g.wg.Add(1)
	g.serveDone = make(chan struct{})
	go func() {
		defer g.wg.Done()
		defer close(g.serveDone)
		if err := evl.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			g.log.Error("device listener stopped", "err", err)
		}
	}()
	g.adm.up.Store(true) // after every field the admin handlers read is set
	g.log.Info("gateway listening", "devices", ln.Addr().String(), "admin", g.AdminAddr(), "node", g.cfg.Node,
		"max_conns", g.live.Load().maxConns, "max_detached", g.sessions.maxDetached, "max_unread", g.maxUnread)
	return nil
}

// Addr is the device listener's address (useful with port 0).
func (g *Gateway) Addr() net.Addr {
	if g.ln == nil {
		return nil
	}
	return g.ln.Addr()
}

// AdminAddr is the admin listener's address, or "" when disabled.
func (g *Gateway) AdminAddr() string {
	if g.adminLn == nil {
		return ""
	}
	return g.adminLn.Addr().String()
}

// remoteConfig is the shard side's part of the gateway's config.
func (g *Gateway) remoteConfig(dir Directory) remote.Config {
	return remote.Config{
		Directory:     dir,
		Keys:          g.cfg.LinkKeys,
		TLS:           g.cfg.LinkTLS,
		LinksPerShard: g.cfg.LinksPerShard,
		MaxLinkQueue:  g.cfg.MaxLinkQueue,
		LinkHeartbeat: g.cfg.LinkHeartbeat,
		LinkTimeout:   g.cfg.LinkTimeout,
		MoveRate:      g.cfg.MoveRate,
		MoveBuffer:    g.cfg.MoveBuffer,
		KeepBuffer:    g.cfg.CheckpointBuffer,
		MoveTimeout:   g.cfg.MoveTimeout,
		Logger:        g.log,
		Metrics:       g.metrics.remote,
		Devices:       g.devices,
		ShardsChanged: g.refreshRing,
	}
}

// Ready reports whether the gateway takes new sessions.
func (g *Gateway) Ready() bool { return g.started.Load() && !g.draining.Load() }

// acceptBatch is the device listener's accept option: each readiness
// event accepts what the gateway can take on (shed.go, acceptBudget).
func (g *Gateway) acceptBatch() netpoll.Option {
	return netpoll.WithAcceptBatch(func() int {
		return g.shed.acceptBudget(time.Duration(g.live.Load().shedLag))
	})
}
