package client

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Message is one DATA frame received from the gateway.
type Message struct {
	Payload  []byte // owned by the caller
	Reliable bool   // the gateway asked for an ACK (the client sent it)
	Seq      uint32 // downstream seq of reliable DATA; 0 for best effort
}

// Stats are a Client's counters since Dial.
type Stats struct {
	Sent           uint64 // DATA frames handed to the socket for the first time
	Received       uint64 // DATA frames queued for Recv (duplicates excluded)
	Resends        uint64 // reliable DATA frames written again after a reconnect
	Reconnects     uint64 // successful handshakes after the first one
	Duplicates     uint64 // reliable downstream DATA dropped as already delivered
	RateLimited    uint64 // ERROR 429 received: a frame was dropped by the gateway
	TimeoutResends uint64 // go-backs after Config.ResendTimeout without an ACK
	Pending        int    // reliable upstream frames not yet acknowledged
}

// Client is a device's connection to a gateway, kept alive and resumed
// across connection losses. Its methods are safe for concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // canceled by Close; aborts dials and waits
	cancel context.CancelFunc
	wg     sync.WaitGroup

	kick   chan struct{} // wakes the manager: control frames due, GOAWAY seen
	recvCh chan Message  // received messages waiting for Recv
	slots  chan struct{} // one token per unacknowledged reliable frame
	done   chan struct{} // closed when the client stopped (Close or a final error)

	wmu  sync.Mutex // serializes writes and reliable seq assignment; before mu
	wbuf []byte     // write buffer; guarded by wmu

	mu        sync.Mutex
	cur       *conn            // the live connection, nil while reconnecting
	welcome   protocol.Welcome // the latest WELCOME
	resume    []byte           // resume token for the next handshake
	out       outbox
	in        inbox
	acked     chan struct{} // closed and replaced whenever frames are acknowledged
	err       error         // why the client stopped; set once, then done closed
	closed    bool          // Close was called
	closeOnce sync.Once

	sent, received, resends, reconnects, duplicates, rateLimited atomic.Uint64
	timeoutResends                                               atomic.Uint64
}

// Dial connects to cfg.Addr, performs the handshake and returns a running
// Client. A refusal by the gateway is returned as *Error (compare with
// errors.Is against ErrUnauthorized, ErrTakenOver, ErrUnavailable, or use
// errors.As). Dial does not retry; ctx bounds the dial and handshake only.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := newClient(cfg.withDefaults())
	cn, w, err := c.handshake(ctx, c.cfg.Addr)
	if err != nil {
		c.cancel()
		return nil, err
	}
	c.log.Info("connected", "addr", cn.addr, "session", w.Session, "node", w.Node)
	c.attach(cn, w)
	c.wg.Add(1)
	go c.run(cn)
	return c, nil
}

func newClient(cfg Config) *Client {
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "client", "device", cfg.ID),
		ctx:    ctx,
		cancel: cancel,
		kick:   make(chan struct{}, 1),
		recvCh: make(chan Message, cfg.RecvBuffer),
		slots:  make(chan struct{}, cfg.MaxPending),
		done:   make(chan struct{}),
		acked:  make(chan struct{}),
	}
}

// Send sends payload as one DATA frame.
//
// Best effort (reliable false): the frame is written at once with flags 0
// and seq 0, or dropped with ErrNotConnected while the client reconnects.
//
// Reliable: the frame gets the next seq and is kept until the gateway
// acknowledges it; it is resent after a reconnect if needed. Send returns
// once the frame is queued (and written, when connected), not when it is
// acknowledged (see Flush). When MaxPending frames are unacknowledged Send
// blocks until one is, ctx ends or the client stops.
//
// ctx bounds the wait for room only; a write is bounded by WriteTimeout.
func (c *Client) Send(ctx context.Context, payload []byte, reliable bool) error {
	if err := c.stopErr(); err != nil {
		return err
	}
	if len(payload) > c.maxFrame() {
		return ErrTooLarge
	}
	if !reliable {
		return c.sendBestEffort(payload)
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.stopErr()
	}
	p := bytes.Clone(payload)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.stopErr()
	}
	cn := c.cur
	f := c.out.push(p, cn != nil)
	c.mu.Unlock()
	if cn == nil {
		return nil
	}
	c.wbuf = protocol.AppendFrame(c.wbuf[:0], protocol.TypeData, protocol.FlagAckRequested, f.seq, f.payload)
	c.sent.Add(1)
	_ = cn.write(c.wbuf, c.cfg.WriteTimeout) // on failure the frame is resent after the reconnect
	return nil
}

func (c *Client) sendBestEffort(payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	cn := c.cur
	c.mu.Unlock()
	if cn == nil {
		return ErrNotConnected
	}
	c.wbuf = protocol.AppendFrame(c.wbuf[:0], protocol.TypeData, 0, 0, payload)
	c.sent.Add(1)
	if err := cn.write(c.wbuf, c.cfg.WriteTimeout); err != nil {
		c.sent.Add(^uint64(0))
		return ErrNotConnected
	}
	return nil
}

// Recv returns the next DATA frame from the gateway. It blocks until one
// arrives, ctx ends or the client stops; after a stop it returns the
// messages still queued, then the reason: ErrClosed, a final *Error (e.g.
// 409 taken over, 401) or ErrDisconnected.
func (c *Client) Recv(ctx context.Context) (Message, error) {
	select {
	case m := <-c.recvCh:
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	case <-c.done:
		select {
		case m := <-c.recvCh:
			return m, nil
		default:
			return Message{}, c.stopErr()
		}
	}
}

// Flush waits until every reliable frame sent so far is acknowledged, ctx
// ends or the client stops.
func (c *Client) Flush(ctx context.Context) error {
	for {
		c.mu.Lock()
		n, ch := len(c.out.frames), c.acked
		c.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return c.stopErr()
		}
	}
}

// Session returns the session id of the latest WELCOME.
func (c *Client) Session() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome.Session
}

// Resumed reports whether the latest WELCOME resumed an earlier session.
func (c *Client) Resumed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome.Resumed
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	pending := len(c.out.frames)
	c.mu.Unlock()
	return Stats{
		Sent:           c.sent.Load(),
		Received:       c.received.Load(),
		Resends:        c.resends.Load(),
		Reconnects:     c.reconnects.Load(),
		Duplicates:     c.duplicates.Load(),
		RateLimited:    c.rateLimited.Load(),
		TimeoutResends: c.timeoutResends.Load(),
		Pending:        pending,
	}
}

// Close closes the connection, stops reconnecting and waits for the
// client's goroutines. Unacknowledged reliable frames are dropped (call
// Flush first to wait for them). Close is idempotent and always returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.stop(ErrClosed)
		c.cancel()
	})
	c.wg.Wait()
	return nil
}

// stop records why the client stopped, once, and wakes every waiter.
func (c *Client) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
}

// stopErr returns why the client stopped, or nil while it runs.
func (c *Client) stopErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return c.err
}

// maxFrame is the largest payload the gateway accepts.
func (c *Client) maxFrame() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome.MaxFrame
}

// wake nudges the manager goroutine without blocking.
func (c *Client) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}
