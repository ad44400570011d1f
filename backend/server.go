package backend

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-gw/switchyard/internal/rawio"
	"github.com/switchyard-gw/switchyard/internal/trace"
	"github.com/switchyard-gw/switchyard/protocol"
)

// Server is one backend shard: it accepts the gateways' links, keeps the
// session table and runs the Handler. Create it with New, then Start.
type Server struct {
	cfg   Config
	log   *slog.Logger
	stats counters
	runq  *runQueue
	idle  idleSet
	ckpt  checkpoints   // sessions to checkpoint (checkpoint.go)
	quit  chan struct{} // closed by Close: stops the janitor

	drainReq  chan struct{} // closed when a gateway asked this shard to drain (DrainRequested)
	drainOnce sync.Once

	mu       sync.RWMutex // the table and the links; see table.go for the lock order
	byID     map[protocol.SessionID]*Session
	byDevice map[string]*Session
	moved    movedSet // devices whose sessions moved away (fence.go)
	links    map[*link]struct{}
	nextLink uint64
	draining bool
	closed   bool

	gmu      sync.Mutex // goroutine start vs shutdown
	stopping bool       // no new goroutines
	linkWG   sync.WaitGroup
	workWG   sync.WaitGroup
	mainWG   sync.WaitGroup

	keys      atomic.Pointer[[][]byte] // link keys (keys.go)
	metrics   *shardMetrics
	serving   atomic.Bool // announced active: joined, taking sessions (/readyz)
	adminLn   net.Listener
	admin     *http.Server
	ln        net.Listener
	startOnce sync.Once
	closeOnce sync.Once
	closeErr  error
	trace     trace.Table // devices traced here (trace.go)
}

// New validates cfg, fills in the defaults and returns a server that has
// started nothing.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.provision()
	srv := &Server{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "backend", "shard", cfg.Shard),
		runq:     newRunQueue(),
		idle:     idleSet{m: make(map[*Session]struct{})},
		quit:     make(chan struct{}),
		drainReq: make(chan struct{}),
		byID:     make(map[protocol.SessionID]*Session),
		byDevice: make(map[string]*Session),
		links:    make(map[*link]struct{}),
	}
	srv.keys.Store(&cfg.ClusterKeys)
	srv.metrics = newShardMetrics(srv)
	if cfg.Gossip != nil && cfg.Announcer == nil && cfg.Forwarder == nil {
		g, err := newGossip(srv, *cfg.Gossip)
		if err != nil {
			return nil, err
		}
		srv.cfg.Announcer, srv.cfg.Forwarder = g, g
		srv.warnRawGossipKeys()
	}
	return srv, nil
}

// Start binds the link listener, starts the workers, the janitor and the
// accept loop, and announces the shard as active.
func (srv *Server) Start(ctx context.Context) error {
	err := ErrStarted
	srv.startOnce.Do(func() { err = srv.start(ctx) })
	return err
}

func (srv *Server) start(ctx context.Context) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", srv.cfg.Link)
	if err != nil {
		return fmt.Errorf("backend: listen %s: %w", srv.cfg.Link, err)
	}
	srv.gmu.Lock()
	if srv.stopping {
		srv.gmu.Unlock()
		ln.Close()
		return ErrClosed
	}
	srv.ln = ln
	if err := srv.startAdminLocked(); err != nil {
		srv.ln = nil
		srv.gmu.Unlock()
		ln.Close()
		return err
	}
	srv.gmu.Unlock()
	for range srv.cfg.Workers {
		srv.spawn(&srv.workWG, srv.worker)
	}
	srv.spawn(&srv.mainWG, srv.janitor)
	if srv.cfg.CheckpointInterval > 0 {
		srv.spawn(&srv.mainWG, srv.checkpointer)
	}
	srv.spawn(&srv.linkWG, srv.acceptLoop)
	srv.log.Info("backend started", "link", ln.Addr().String(), "admin", srv.AdminAddr(), "workers", srv.cfg.Workers)
	if err := srv.announce(ctx, StateActive); err != nil {
		return err
	}
	srv.serving.Store(true)
	return nil
}

// spawn starts f on a goroutine counted in wg, unless shutdown began.
func (srv *Server) spawn(wg *sync.WaitGroup, f func()) bool {
	srv.gmu.Lock()
	defer srv.gmu.Unlock()
	if srv.stopping {
		return false
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		f()
	}()
	return true
}

func (srv *Server) announce(ctx context.Context, st MemberState) error {
	if srv.cfg.Announcer == nil {
		return nil
	}
	a := Announcement{Shard: srv.cfg.Shard, Link: srv.Addr(), State: st, Labels: srv.cfg.labels()}
	if err := srv.cfg.Announcer.Announce(ctx, a); err != nil {
		return fmt.Errorf("backend: announce %s: %w", st, err)
	}
	return nil
}

// Addr returns the bound link address ("" before Start).
func (srv *Server) Addr() string {
	srv.gmu.Lock()
	defer srv.gmu.Unlock()
	if srv.ln == nil {
		return ""
	}
	return srv.ln.Addr().String()
}

// Shard returns the shard name.
func (srv *Server) Shard() string { return srv.cfg.Shard }

// Stats returns the counters.
func (srv *Server) Stats() Stats { return srv.stats.snapshot() }

// acceptLoop takes new links until the listener closes.
func (srv *Server) acceptLoop() {
	for {
		conn, err := srv.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		conn = rawio.Wrap(conn) // reads and writes that wake no sysmon (internal/rawio)
		if srv.cfg.LinkTLS != nil {
			// The handshake runs in the link's goroutine, on its first
			// read, under the authentication deadline (auth.go).
			conn = tls.Server(conn, srv.cfg.LinkTLS)
		}
		srv.mu.Lock()
		full := len(srv.links) >= srv.cfg.MaxLinks || srv.closed
		srv.nextLink++
		l := newLink(srv, conn, srv.nextLink)
		if !full {
			srv.links[l] = struct{}{} // counted from accept so MaxLinks bounds unauthenticated ones too
		}
		srv.mu.Unlock()
		if full || !srv.spawn(&srv.linkWG, func() { srv.serveLink(l) }) {
			srv.stats.linksRejected.Add(1)
			srv.dropLink(l)
			conn.Close()
		}
	}
}

// serveLink authenticates l, starts its writer and reads until it ends.
func (srv *Server) serveLink(l *link) {
	node, err := l.authenticate()
	if tc, ok := l.conn.(*tls.Conn); ok && err != nil && !tc.ConnectionState().HandshakeComplete {
		srv.stats.linkTLSFailures.Add(1)
		srv.log.Warn("link refused: TLS handshake failed", "remote", l.conn.RemoteAddr().String(), "err", err,
			"hint", "a gateway without link TLS (link_tls_ca_file), or a certificate another CA signed")
		srv.dropLink(l)
		l.close(err)
		return
	}
	if err != nil {
		srv.stats.authFailures.Add(1)
		srv.log.Warn("link refused", "remote", l.conn.RemoteAddr().String(), "err", err)
		srv.dropLink(l)
		l.close(err)
		return
	}
	srv.mu.Lock()
	l.node = node // under mu: Publish reads it
	srv.mu.Unlock()
	l.authed.Store(true)
	srv.stats.linksAccepted.Add(1)
	srv.stats.links.Add(1)
	srv.log.Info("link up", "gateway", l.node, "remote", l.conn.RemoteAddr().String(), "tls", srv.cfg.LinkTLS != nil)
	if !srv.spawn(&srv.linkWG, l.writeLoop) {
		l.close(ErrClosed)
	}
	l.readLoop()
	l.close(nil)
	srv.linkLost(l)
	srv.log.Info("link down", "gateway", l.node, "cause", l.cause)
}

// dropLink forgets a link that never authenticated.
func (srv *Server) dropLink(l *link) {
	srv.mu.Lock()
	delete(srv.links, l)
	srv.mu.Unlock()
}

// Session returns the session of deviceID on this shard, or nil.
func (srv *Server) Session(deviceID string) *Session {
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	return srv.byDevice[deviceID]
}

// local returns deviceID's session when it is served here (not moved).
func (srv *Server) local(deviceID string) *Session {
	s := srv.Session(deviceID)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateFenced || s.state == stateClosed {
		return nil
	}
	return s
}

// Push sends payload to deviceID: Session.Send when its session is on
// this shard, otherwise through the Forwarder (ErrNotOwner without one),
// which finds the session also while a gateway moves it between shards
// (forward.go). An error means the payload was not delivered (or, for
// ErrForwardTimeout, may not have been); every one is counted in
// Stats.PushFailed.
func (srv *Server) Push(deviceID string, payload []byte, reliable bool) error {
	err := srv.push(deviceID, payload, reliable)
	if err != nil {
		srv.stats.pushFailed.Add(1)
	}
	return err
}

func (srv *Server) push(deviceID string, payload []byte, reliable bool) error {
	if s := srv.local(deviceID); s != nil {
		// ErrSessionMoved: fenced since local looked; it is on its way to
		// the ring's owner.
		if err := s.Send(payload, reliable); !errors.Is(err, ErrSessionMoved) {
			return err
		}
	}
	if srv.cfg.Forwarder == nil {
		return ErrNotOwner
	}
	return srv.cfg.Forwarder.Push(deviceID, payload, reliable)
}

// Kick closes deviceID's connection with ERROR code, through the
// Forwarder when its session is not on this shard. Errors are counted in
// Stats.KickFailed.
func (srv *Server) Kick(deviceID string, code int, reason string) error {
	err := srv.kick(deviceID, code, reason)
	if err != nil {
		srv.stats.kickFailed.Add(1)
	}
	return err
}

func (srv *Server) kick(deviceID string, code int, reason string) error {
	if s := srv.local(deviceID); s != nil {
		if err := s.Kick(code, reason); !errors.Is(err, ErrSessionMoved) {
			return err
		}
	}
	if srv.cfg.Forwarder == nil {
		return ErrNotOwner
	}
	return srv.cfg.Forwarder.Kick(deviceID, code, reason)
}

// Publish sends payload to topic's subscribers: one Publish envelope to
// every connected gateway, which fans it out to its local subscribers
// (best effort). All publishes of a topic to one gateway take the same
// link, so they stay in order.
func (srv *Server) Publish(topic string, payload []byte) error {
	if topic == "" || len(topic) > maxTopic {
		return ErrBadTopic
	}
	if len(payload) > maxPayload {
		return ErrTooLarge
	}
	ext := encodeExt(&linkExt{LinkExt: protocol.LinkExt{Topic: topic}})
	var errs []error
	for _, l := range srv.gatewayLinks(topic) {
		if err := l.send(&protocol.Envelope{Kind: protocol.LinkPublish, Payload: payload, Ext: ext}, droppable); err != nil {
			errs = append(errs, fmt.Errorf("backend: publish to %s: %w", l.node, err))
		}
	}
	return errors.Join(errs...)
}

// gatewayLinks picks one authenticated link per gateway, by topic hash.
func (srv *Server) gatewayLinks(topic string) []*link {
	srv.mu.RLock()
	byNode := make(map[string][]*link)
	for l := range srv.links {
		if l.node != "" {
			byNode[l.node] = append(byNode[l.node], l)
		}
	}
	srv.mu.RUnlock()
	h := fnv32(topic)
	out := make([]*link, 0, len(byNode))
	for _, ls := range byNode {
		sort.Slice(ls, func(i, j int) bool { return ls[i].id < ls[j].id })
		out = append(out, ls[h%uint32(len(ls))])
	}
	return out
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// Drain stops taking sessions that are not on this shard yet (their
// Opens get Refused 503), announces the shard as draining and waits until
// no gateway holds a session here (the gateways move them away, with
// their state, to the shards the ring names now) or ctx ends, which is
// counted in Stats.DrainTimeouts.
func (srv *Server) Drain(ctx context.Context) error {
	srv.mu.Lock()
	srv.draining = true
	srv.mu.Unlock()
	if err := srv.announce(ctx, StateDraining); err != nil {
		return err
	}
	t := time.NewTicker(drainPoll)
	defer t.Stop()
	for srv.bound() > 0 {
		select {
		case <-ctx.Done():
			n := srv.bound()
			srv.stats.drainTimeouts.Add(1)
			srv.log.Warn("drain timed out with sessions still bound", "sessions", n)
			return fmt.Errorf("backend: drain: %d sessions still bound: %w", n, ctx.Err())
		case <-t.C:
		}
	}
	srv.log.Info("drained: no gateway holds a session here")
	return nil
}

// drainPoll is how often Drain counts the bound sessions.
const drainPoll = 20 * time.Millisecond

// bound counts the sessions a gateway holds: opening, attached, or
// fenced while still bound to its link. A fenced session is in the middle
// of a move: the gateway keeps it on this shard's link until the new
// shard answers Opened, then sends Close here. Exiting before that Close
// would take the link, and with it every session still moving, down.
func (srv *Server) bound() int {
	srv.mu.RLock()
	defer srv.mu.RUnlock()
	n := 0
	for _, s := range srv.byID {
		s.mu.Lock()
		if s.state == stateOpening || s.state == stateAttached || (s.state == stateFenced && s.link != nil) {
			n++
		}
		s.mu.Unlock()
	}
	return n
}
