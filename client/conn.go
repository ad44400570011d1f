package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// conn is one TCP connection to a gateway and the state that lives and dies
// with it.
type conn struct {
	nc   net.Conn
	addr string
	fr   *protocol.StreamReader // reads cn (Read), so every byte read is timed

	lastRecv   atomic.Int64               // unix nanos of the last byte read
	lastSent   atomic.Int64               // unix nanos of the last write
	delivering atomic.Bool                // the reader waits for Recv to take a message
	goaway     atomic.Pointer[goawayPlan] // set when the gateway sent GOAWAY
	resendAt   atomic.Int64               // unix nanos: go back and resend unacknowledged frames (after a 429); 0 = no

	stuckSeq   uint32    // oldest unacknowledged seq when last looked at (serve goroutine only)
	stuckSince time.Time // since when it has been the oldest (serve goroutine only)

	closeOnce sync.Once
	closed    chan struct{} // closed by close
	err       error         // why the connection ended; set once, before closed
	done      chan struct{} // closed when the reader goroutine has exited
}

// goawayPlan is when and where to reconnect after a GOAWAY.
type goawayPlan struct {
	at      time.Time // reconnect no earlier than this (jittered within retry_ms)
	targets []string  // redirect addresses, tried before Config.Addr
}

func newConn(nc net.Conn, addr string, maxPayload int) *conn {
	cn := &conn{nc: nc, addr: addr, closed: make(chan struct{}), done: make(chan struct{})}
	cn.fr = protocol.NewFrameReader(cn, maxPayload)
	now := time.Now().UnixNano()
	cn.lastRecv.Store(now)
	cn.lastSent.Store(now)
	return cn
}

// Read reads from the socket and notes the time of any byte received.
func (cn *conn) Read(p []byte) (int, error) {
	n, err := cn.nc.Read(p)
	if n > 0 {
		cn.lastRecv.Store(time.Now().UnixNano())
	}
	return n, err
}

// close ends the connection with cause; only the first cause is kept.
func (cn *conn) close(cause error) {
	cn.closeOnce.Do(func() {
		cn.err = cause
		close(cn.closed)
		_ = cn.nc.Close()
	})
}

// cause returns why the connection ended; valid once closed is closed.
func (cn *conn) cause() error {
	<-cn.closed
	return cn.err
}

// write writes b within timeout; a failed write breaks the connection.
func (cn *conn) write(b []byte, timeout time.Duration) error {
	now := time.Now()
	_ = cn.nc.SetWriteDeadline(now.Add(timeout))
	if _, err := cn.nc.Write(b); err != nil {
		cn.close(fmt.Errorf("client: write to %s: %w", cn.addr, err))
		return err
	}
	cn.lastSent.Store(now.UnixNano())
	return nil
}

// handshake dials addr, sends HELLO and waits for WELCOME. A refusal is
// returned as *Error.
func (c *Client) handshake(ctx context.Context, addr string) (*conn, protocol.Welcome, error) {
	d := net.Dialer{Timeout: c.cfg.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, protocol.Welcome{}, fmt.Errorf("client: dial %s: %w", addr, err)
	}
	if c.cfg.TLS != nil {
		nc = tls.Client(nc, tlsFor(c.cfg.TLS, addr))
	}
	cn := newConn(nc, addr, c.cfg.MaxRecvPayload)
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	w, err := c.exchangeHello(cn)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		cn.close(err)
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, protocol.Welcome{}, fmt.Errorf("client: handshake with %s: %w", addr, err)
	}
	return cn, w, nil
}

// tlsFor is conf for a connection to addr: with the server name of
// addr's host when conf names none (a fallback is another host).
func tlsFor(conf *tls.Config, addr string) *tls.Config {
	if conf.ServerName != "" || conf.InsecureSkipVerify {
		return conf
	}
	conf = conf.Clone()
	conf.ServerName, _, _ = net.SplitHostPort(addr)
	return conf
}

// exchangeHello writes HELLO on cn and reads the answer.
func (c *Client) exchangeHello(cn *conn) (protocol.Welcome, error) {
	var w protocol.Welcome
	_ = cn.nc.SetDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
	p, err := protocol.EncodeHello(c.hello())
	if err != nil {
		return w, err
	}
	if _, err := cn.nc.Write(protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, p)); err != nil {
		return w, err
	}
	f, err := cn.fr.NextFrame()
	if err != nil {
		return w, err
	}
	switch f.Type {
	case protocol.TypeWelcome:
		if err := protocol.Unmarshal(f.Payload, &w); err != nil {
			return w, fmt.Errorf("%w: WELCOME: %v", ErrHandshake, err)
		}
	case protocol.TypeError:
		return w, decodeError(f.Payload)
	default:
		return w, fmt.Errorf("%w: %v", ErrHandshake, f.Type)
	}
	return w, cn.nc.SetDeadline(time.Time{})
}

// hello builds the HELLO for the next handshake.
func (c *Client) hello() *protocol.Hello {
	h := &protocol.Hello{V: protocol.Version, ID: c.cfg.ID, Token: c.cfg.Token, Tags: c.cfg.Tags}
	if len(c.cfg.Secret) > 0 {
		h.Token = protocol.MakeToken(c.cfg.Secret, c.cfg.ID, time.Now().Add(c.cfg.TokenTTL))
	}
	c.mu.Lock()
	h.Resume, h.Last = c.resume, c.in.delivered
	c.mu.Unlock()
	return h
}

// decodeError turns an ERROR payload into *Error.
func decodeError(p []byte) error {
	var m protocol.ErrorMsg
	if err := protocol.Unmarshal(p, &m); err != nil || m.Code == 0 {
		return &Error{Code: protocol.CodeInternal, Message: "unreadable ERROR frame"}
	}
	return &Error{Code: m.Code, Message: m.Message, Retry: time.Duration(max(m.RetryMS, 0)) * time.Millisecond}
}
