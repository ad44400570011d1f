package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cloudwego/netpoll"

	"github.com/switchyard-gw/switchyard/internal/proxyproto"
)

// PROXY protocol on the device listener (docs/operations.md "Behind a
// load balancer: PROXY protocol"). With Config.ProxyProtocolNetworks set,
// a connection from one of those networks must begin with a PROXY header
// (version 1 or 2, told apart by its first byte) within the handshake
// timeout, before its HELLO; the client address in the header is then
// the device's address everywhere the gateway shows one (conn.remote:
// logs, the admin API's sessions, the disconnect ring, traces). A
// connection from any other source is closed at once, without a byte:
// whoever bypasses the load balancer learns nothing, and the ERROR frame
// would be addressed to a peer the gateway cannot tell apart from an
// attacker forging headers. A malformed header or a header that does not
// come in time closes the connection the same way: the peer is the load
// balancer (or not a device at all), which does not read our frames.
// Each is logged with the refusals (rate-limited, code 0: nothing sent)
// and counted in switchyard_proxy_refused_total{reason}.
//
//	accept ──▶ onPrepare: source trusted? ── no ──▶ close (untrusted)
//	                        │ yes: c.proxy, the handshake deadline
//	                        ▼
//	           onRequest: proxyHeader ── needs more ──▶ c.partial (≤ MaxV2Header)
//	                        │ malformed ──▶ close (malformed)
//	                        │ header: c.proxy.addr, the rest of the input
//	                        ▼
//	           the frame loop: HELLO, …          Expire before the header ──▶ close (timeout)
//
// A LOCAL header (the load balancer's own health check) or version 1's
// UNKNOWN is accepted, and the connection goes on with the socket's
// address.

// proxyState is the PROXY protocol state of one connection, allocated only
// for connections that owe a header (nil otherwise: conn stays small).
type proxyState struct {
	done atomic.Bool // the header was read; addr is final
	addr string      // the device's address from the header; "" = the socket's (LOCAL)
	src  netip.Addr  // the same, for the abuse penalty (penalty.go); invalid for LOCAL
}

// Refusal reasons, the label of switchyard_proxy_refused_total.
const (
	proxyUntrusted = "untrusted" // the source is not in ProxyProtocolNetworks
	proxyMalformed = "malformed" // the header is not a valid PROXY header
	proxyTimeout   = "timeout"   // no whole header within the handshake timeout
)

// reasonProxy is the disconnect reason of every PROXY refusal.
const reasonProxy = "proxy"

// proxyMetrics count PROXY headers and refusals.
type proxyMetrics struct {
	headers map[string]*metrics.Counter // by kind: v1, v2, local
	refused map[string]*metrics.Counter // by reason
}

// newProxyMetrics creates the PROXY series in s and the disconnect reason
// of a refusal in disconnects.
func newProxyMetrics(s *metrics.Set, disconnects map[string]*metrics.Counter) *proxyMetrics {
	m := &proxyMetrics{headers: map[string]*metrics.Counter{}, refused: map[string]*metrics.Counter{}}
	for _, k := range []string{"v1", "v2", "local"} {
		m.headers[k] = s.NewCounter(`switchyard_proxy_headers_total{kind="` + k + `"}`)
	}
	for _, r := range []string{proxyUntrusted, proxyMalformed, proxyTimeout} {
		m.refused[r] = s.NewCounter(`switchyard_proxy_refused_total{reason="` + r + `"}`)
	}
	disconnects[reasonProxy] = s.NewCounter(`switchyard_disconnects_total{reason="` + reasonProxy + `"}`)
	return m
}

// validateProxyNetworks checks the trusted networks.
func validateProxyNetworks(nets []netip.Prefix) error {
	for i, p := range nets {
		if !p.IsValid() {
			return fmt.Errorf("proxy protocol network %d: not a valid prefix", i)
		}
	}
	return nil
}

// proxyAdmit runs in onPrepare. Without trusted networks it admits the
// connection as it is. With them, a connection from a trusted source is
// admitted owing a header; any other is refused (closed on the wheel's
// next tick, as refuse does) and proxyAdmit returns false.
func (c *conn) proxyAdmit() bool {
	nets := c.g.live.Load().proxyNets
	if len(nets) == 0 {
		return true
	}
	if trusted(nets, c.nc.RemoteAddr()) {
		c.proxy = new(proxyState)
		return true
	}
	c.g.metrics.proxy.refused[proxyUntrusted].Inc()
	c.g.refusals.note(0, "", c.remote(), "PROXY protocol: source not in proxy_protocol_networks")
	c.wmu.Lock()
	c.setClosing()
	c.reason = reasonProxy
	c.wmu.Unlock()
	return false // onPrepare closes it (closeRefused)
}

// trusted reports whether a is in one of nets (an IPv4 peer on a dual-stack
// socket is matched as IPv4).
func trusted(nets []netip.Prefix, a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip := ta.AddrPort().Addr().Unmap()
	for _, p := range nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// owesProxy reports whether the connection has not sent its PROXY header
// yet. Any goroutine.
func (c *conn) owesProxy() bool { return c.proxy != nil && !c.proxy.done.Load() }

// proxyHeader reads the PROXY header from the start of the input. It
// returns true once the header is read (the input left is the
// connection's frames); false when it needs more bytes (all the input was
// taken into c.partial) or refused the connection. The caller holds pmu.
func (c *conn) proxyHeader(r netpoll.Reader) bool {
	if r.Len() == 0 {
		return false
	}
	peek, err := r.Peek(min(r.Len(), proxyproto.MaxV2Header))
	if err != nil {
		return false
	}
	in, held := peek, 0
	if c.partial != nil {
		held = len(*c.partial)
		*c.partial = append(*c.partial, peek...)
		in = *c.partial
	}
	h, n, more, err := proxyproto.Parse(in)
	switch {
	case err != nil:
		c.proxyRefuse(proxyMalformed, err)
		return false
	case more: // under MaxV2Header bytes so far: Parse decides within them
		if c.partial == nil {
			buf := partialPool.Get().(*[]byte)
			*buf = append((*buf)[:0], peek...)
			c.partial = buf
		}
		_ = r.Skip(len(peek))
		_ = r.Release()
		return false
	}
	_ = r.Skip(n - held)
	_ = r.Release()
	c.dropPartial()
	c.proxyDone(&h)
	if c.penalized() { // the device's own address is known only now (penalty.go)
		c.nc.Close()
		return false
	}
	return true
}

// proxyDone records the header's client address and counts the header.
func (c *conn) proxyDone(h *proxyproto.Header) {
	kind := "local"
	if !h.Local() {
		kind = "v2"
		if h.Version == 1 {
			kind = "v1"
		}
		c.proxy.src = h.Source.Addr().Unmap()
		c.proxy.addr = netip.AddrPortFrom(c.proxy.src, h.Source.Port()).String()
	}
	c.g.metrics.proxy.headers[kind].Inc()
	c.proxy.done.Store(true)
}

// errProxyTimeout is why a connection that sent no whole header in time
// was closed.
var errProxyTimeout = errors.New("no PROXY header within the handshake timeout")

// proxyRefuse logs, counts and closes a connection whose header was
// malformed or late (no byte is sent: see the top of this file).
func (c *conn) proxyRefuse(reason string, err error) {
	c.g.metrics.proxy.refused[reason].Inc()
	c.g.refusals.note(0, "", c.remote(), "PROXY protocol: "+err.Error())
	c.shut(reasonProxy)
}

// proxyRemote is the device's address from its PROXY header, or "" when
// it has none (PROXY off, no header yet, LOCAL). Any goroutine.
func (c *conn) proxyRemote() string {
	if p := c.proxy; p != nil && p.done.Load() {
		return p.addr
	}
	return ""
}
