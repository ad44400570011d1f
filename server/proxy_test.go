package server

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// The PROXY headers of these tests are written by hand, byte by byte as
// the specification lays them out, so that they check the gateway against
// the format and not against the parser's own idea of it.

// loopbackOnly is the trusted network of most tests: the tests' devices
// (and HAProxy) connect from 127.0.0.1; 127.0.0.2 is another source.
var loopbackOnly = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// proxyV2 is a version 2 PROXY header with the addresses of src and dst
// (AF_INET when src is IPv4, AF_INET6 otherwise) and extra bytes after
// them (TLVs); length >= 0 replaces the true length field (to lie).
func proxyV2(src, dst string, length int, extra ...byte) []byte {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	var block []byte
	if s.Addr().Is4() {
		b = append(b, 0x21, 0x11) // version 2, PROXY; AF_INET, STREAM
		a, c := s.Addr().As4(), d.Addr().As4()
		block = append(a[:], c[:]...)
	} else {
		b = append(b, 0x21, 0x21) // AF_INET6, STREAM
		a, c := s.Addr().As16(), d.Addr().As16()
		block = append(a[:], c[:]...)
	}
	block = binary.BigEndian.AppendUint16(block, s.Port())
	block = binary.BigEndian.AppendUint16(block, d.Port())
	block = append(block, extra...)
	if length < 0 {
		length = len(block)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(length))
	return append(b, block...)
}

// proxyV2Local is a version 2 LOCAL header (a load balancer's health check).
var proxyV2Local = []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")

// helloBytes is a HELLO frame of device id.
func helloBytes(t *testing.T, id string) []byte {
	t.Helper()
	p, err := protocol.EncodeHello(&protocol.Hello{V: 1, ID: id})
	if err != nil {
		t.Fatal(err)
	}
	return protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, p)
}

// welcomed reads the WELCOME that must answer d's HELLO.
func (d *dev) welcomed() {
	d.t.Helper()
	if f := d.read(); f.Type != protocol.TypeWelcome {
		d.t.Fatalf("want WELCOME, got %v %s", f.Type, errText(f))
	}
}

// expectSilentClose checks that the gateway closes d without sending a
// byte (a FIN, or a reset when it left input unread).
func (d *dev) expectSilentClose() {
	d.t.Helper()
	_ = d.nc.SetReadDeadline(time.Now().Add(poll.Patience))
	b, err := io.ReadAll(d.r)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		d.t.Fatalf("connection still open after %v", poll.Patience)
	case err != nil && !errors.Is(err, syscall.ECONNRESET):
		d.t.Fatalf("read: %v", err)
	case len(b) > 0:
		d.t.Fatalf("the gateway sent %q before closing", b)
	}
}

// sessionRemote is the remote address the admin API shows for device id.
func sessionRemote(t *testing.T, g *Gateway, id string) string {
	t.Helper()
	code, body := api(t, g, http.MethodGet, "/api/v1/sessions/"+id, "", "")
	var s SessionInfo
	if err := json.Unmarshal([]byte(body), &s); code != http.StatusOK || err != nil {
		t.Fatalf("session %s: %d %s", id, code, body)
	}
	return s.Remote
}

// closedRemote waits for the disconnect of device id and returns the
// remote address the disconnect ring recorded.
func closedRemote(t *testing.T, g *Gateway, id string) string {
	t.Helper()
	var got []Disconnect
	waitFor(t, "the disconnect of "+id, func() bool { got = g.disconnects.recent(id, 1); return len(got) == 1 })
	return got[0].Remote
}

// TestProxyHeaders: behind a trusted proxy, the address of a valid header
// (v1 and v2, IPv4 and IPv6) is the device's in the admin API's session
// and in the disconnect ring; LOCAL and UNKNOWN keep the socket's. The
// header and the HELLO come in one write, so the handler must hand the
// bytes after the header to the frame loop.
func TestProxyHeaders(t *testing.T) {
	g := startGateway(t, Config{ProxyProtocolNetworks: loopbackOnly})
	const socket = "" // the test device's own address, as the gateway sees it
	cases := []struct {
		name, kind, remote string
		header             []byte
	}{
		{"v1 tcp4", "v1", "203.0.113.7:40001", []byte("PROXY TCP4 203.0.113.7 127.0.0.1 40001 7400\r\n")},
		{"v1 tcp6", "v1", "[2001:db8::7]:40002", []byte("PROXY TCP6 2001:db8::7 ::1 40002 7400\r\n")},
		{"v2 inet", "v2", "198.51.100.9:40003", proxyV2("198.51.100.9:40003", "127.0.0.1:7400", -1)},
		{"v2 inet6", "v2", "[2001:db8::9]:40004", proxyV2("[2001:db8::9]:40004", "[::1]:7400", -1)},
		{"v2 inet6 mapped", "v2", "192.0.2.44:40005", proxyV2("[::ffff:192.0.2.44]:40005", "[::1]:7400", -1)},
		{"v2 inet with TLVs", "v2", "198.51.100.10:40006", proxyV2("198.51.100.10:40006", "127.0.0.1:7400", -1,
			0x04, 0x00, 0x00, 0x05, 0x00, 0x03, 'i', 'd', '1')},
		{"v2 local", "local", socket, proxyV2Local},
		{"v1 unknown", "local", socket, []byte("PROXY UNKNOWN\r\n")},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("proxied-%d", i)
			before := g.metrics.proxy.headers[c.kind].Get()
			d := dial(t, g)
			want := c.remote
			if want == socket {
				want = d.nc.LocalAddr().String()
			}
			d.write(append(append([]byte{}, c.header...), helloBytes(t, id)...))
			d.welcomed()
			if got := sessionRemote(t, g, id); got != want {
				t.Fatalf("admin API shows remote %q, want %q", got, want)
			}
			if n := g.metrics.proxy.headers[c.kind].Get(); n != before+1 {
				t.Fatalf("switchyard_proxy_headers_total{kind=%q} %d, want %d", c.kind, n, before+1)
			}
			d.nc.Close()
			if got := closedRemote(t, g, id); got != want {
				t.Fatalf("disconnect ring shows remote %q, want %q", got, want)
			}
		})
	}
}

// TestProxyAddressLoggedAndTraced: the header's address is the one the
// refusal log and a device's trace show; a refused source is logged with
// its socket's address (it sent no header to trust).
func TestProxyAddressLoggedAndTraced(t *testing.T) {
	var buf syncBuffer
	g := startGateway(t, Config{ProxyProtocolNetworks: loopbackOnly, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err := g.trace.Start("traced", "t1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	first := dial(t, g)
	first.write(append(proxyV2("198.51.100.9:40003", "127.0.0.1:7400", -1), helloBytes(t, "traced")...))
	first.welcomed()
	second := dial(t, g)
	second.write(append(proxyV2("198.51.100.10:40004", "127.0.0.1:7400", -1), helloBytes(t, "traced")...))
	second.welcomed()
	first.expectError(protocol.CodeConflict, true)
	untrusted := dialFrom(t, g, "127.0.0.2")
	untrusted.expectSilentClose()
	waitFor(t, "the log lines", func() bool {
		s := buf.String()
		return logHas(s, `msg="trace: HELLO"`, "device=traced", "remote=198.51.100.9:40003") &&
			logHas(s, `msg="trace: HELLO"`, "device=traced", "remote=198.51.100.10:40004") &&
			logHas(s, `msg="device refused"`, "code=409", "device=traced", "remote=198.51.100.9:40003") &&
			logHas(s, `msg="device refused"`, "code=0", "remote=127.0.0.2:", "proxy_protocol_networks")
	})
}

// TestProxyHeaderSplit: a header that arrives in two pieces, split at
// every byte, is read whole, and what follows it is left to the frame
// loop. It drives the handler's header step with netpoll's own buffer, so
// that every split is certain (over a socket the kernel may join pieces).
func TestProxyHeaderSplit(t *testing.T) {
	g := startGateway(t, Config{ProxyProtocolNetworks: loopbackOnly})
	hello := helloBytes(t, "split")
	for _, h := range []struct {
		name, remote string
		header       []byte
	}{
		{"v1", "203.0.113.7:40001", []byte("PROXY TCP4 203.0.113.7 127.0.0.1 40001 7400\r\n")},
		{"v2", "[2001:db8::9]:40004", proxyV2("[2001:db8::9]:40004", "[::1]:7400", -1, 0x04, 0x00, 0x00)},
	} {
		in := append(append([]byte{}, h.header...), hello...)
		for i := 1; i < len(h.header); i++ {
			c := &conn{g: g, proxy: new(proxyState)}
			r := netpoll.NewLinkBuffer()
			_, _ = r.WriteBinary(in[:i])
			_ = r.Flush()
			if c.proxyHeader(r) || r.Len() != 0 || c.owesProxy() == false {
				t.Fatalf("%s split at %d: first piece: done %v, %d bytes left unread", h.name, i, !c.owesProxy(), r.Len())
			}
			_, _ = r.WriteBinary(in[i:])
			_ = r.Flush()
			if !c.proxyHeader(r) || c.remote() != h.remote || r.Len() != len(hello) || c.partial != nil {
				t.Fatalf("%s split at %d: second piece: remote %q, %d bytes left (want the %d of the HELLO)",
					h.name, i, c.remote(), r.Len(), len(hello))
			}
			_ = r.Close()
		}
	}
}

// TestProxyHeaderByteByByte: over a real socket, a header written one
// byte at a time (TCP_NODELAY: one segment each) is read whole.
func TestProxyHeaderByteByByte(t *testing.T) {
	g := startGateway(t, Config{ProxyProtocolNetworks: loopbackOnly})
	for i, h := range []struct {
		remote string
		header []byte
	}{
		{"[2001:db8::7]:40002", []byte("PROXY TCP6 2001:db8::7 ::1 40002 7400\r\n")},
		{"198.51.100.9:40003", proxyV2("198.51.100.9:40003", "127.0.0.1:7400", -1, 0x04, 0x00, 0x01, 0x00)},
	} {
		id := fmt.Sprintf("bytewise-%d", i)
		d := dial(t, g)
		for _, b := range h.header {
			d.write([]byte{b})
		}
		d.write(helloBytes(t, id))
		d.welcomed()
		if got := sessionRemote(t, g, id); got != h.remote {
			t.Fatalf("remote %q, want %q", got, h.remote)
		}
	}
}

// TestProxyRefused: from a trusted source, anything but a valid header in
// time closes the connection without a byte, counted by reason; no session
// is made. Malformed input is refused on its first bytes, a header that
// never completes at the handshake timeout.
func TestProxyRefused(t *testing.T) {
	// The timeouts on a gateway of their own with a short handshake
	// timeout; the malformed headers where a loaded box cannot turn them
	// into timeouts.
	patient := startGateway(t, Config{ProxyProtocolNetworks: loopbackOnly})
	hasty := startGateway(t, Config{ProxyProtocolNetworks: loopbackOnly, HandshakeTimeout: 300 * time.Millisecond})
	hello := helloBytes(t, "refused")
	good := proxyV2("198.51.100.9:40003", "127.0.0.1:7400", -1)
	cases := []struct {
		name, reason string
		in           []byte
	}{
		{"HELLO without a header", proxyMalformed, hello},
		{"HTTP", proxyMalformed, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"v2 bad signature", proxyMalformed, append([]byte("\r\n\r\n\x00\r\nQUIZ\n"), good[12:]...)},
		{"v2 version 1", proxyMalformed, append(append([]byte{}, good[:12]...), 0x11, 0x11, 0, 12)},
		{"v2 length lies short: the HELLO read as TLVs overruns", proxyMalformed,
			append(proxyV2("198.51.100.9:40003", "127.0.0.1:7400", 12+8), hello...)},
		{"v2 length short of the addresses", proxyMalformed, proxyV2("198.51.100.9:40003", "127.0.0.1:7400", 11)},
		{"v2 length over the bound", proxyMalformed, proxyV2("198.51.100.9:40003", "127.0.0.1:7400", 0xFFFF)},
		{"v1 without CRLF in 107 bytes", proxyMalformed, []byte("PROXY UNKNOWN " + strings.Repeat("x", 100))},
		{"v1 bad port", proxyMalformed, append([]byte("PROXY TCP4 203.0.113.7 127.0.0.1 70000 7400\r\n"), hello...)},
		{"v2 truncated", proxyTimeout, good[:20]},
		{"v2 length lies long: waits for bytes that never come", proxyTimeout,
			append(proxyV2("198.51.100.9:40003", "127.0.0.1:7400", 200), hello...)},
		{"nothing at all", proxyTimeout, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := patient
			if c.reason == proxyTimeout {
				g = hasty
			}
			before := g.metrics.proxy.refused[c.reason].Get()
			closes := g.metrics.disconnects[reasonProxy].Get()
			d := dial(t, g)
			d.write(c.in)
			d.expectSilentClose()
			waitFor(t, "the refusal counted", func() bool {
				return g.metrics.proxy.refused[c.reason].Get() == before+1 && g.metrics.disconnects[reasonProxy].Get() == closes+1
			})
			if n := g.metrics.sessions.Load(); n != 0 {
				t.Fatalf("%d sessions after a refused header", n)
			}
		})
	}
}

// TestProxyTruncatedThenClosed: a connection that closes in the middle of
// its header is a peer close, not a refusal; nothing is left behind.
func TestProxyTruncatedThenClosed(t *testing.T) {
	g := startGateway(t, Config{ProxyProtocolNetworks: loopbackOnly})
	d := dial(t, g)
	d.write(proxyV2("198.51.100.9:40003", "127.0.0.1:7400", -1)[:14])
	waitFor(t, "the partial header taken", func() bool { return g.metrics.conns.Load() == 1 })
	d.nc.Close()
	waitFor(t, "the connection gone", func() bool { return g.metrics.conns.Load() == 0 })
	if n := g.metrics.disconnects[reasonPeer].Get(); n != 1 {
		t.Fatalf("%d peer disconnects, want 1", n)
	}
	for r, m := range g.metrics.proxy.refused {
		if m.Get() != 0 {
			t.Fatalf("refused{%s} %d, want 0", r, m.Get())
		}
	}
}

// dialFrom connects to g from the loopback address src.
func dialFrom(t *testing.T, g *Gateway, src string) *dev {
	t.Helper()
	dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	nc, err := dl.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &dev{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// TestProxyUntrusted: with PROXY protocol on, a connection from a source
// outside the trusted networks is closed without a byte, even with a valid
// header, and counted; the trusted source is served beside it.
func TestProxyUntrusted(t *testing.T) {
	g := startGateway(t, Config{ProxyProtocolNetworks: loopbackOnly})
	header := proxyV2("198.51.100.9:40003", "127.0.0.1:7400", -1)
	d := dialFrom(t, g, "127.0.0.2")
	d.write(append(append([]byte{}, header...), helloBytes(t, "spoofer")...))
	d.expectSilentClose()
	waitFor(t, "the refusal counted", func() bool {
		return g.metrics.proxy.refused[proxyUntrusted].Get() == 1 && g.metrics.disconnects[reasonProxy].Get() == 1
	})
	ok := dialFrom(t, g, "127.0.0.1")
	ok.write(append(append([]byte{}, header...), helloBytes(t, "behind-lb")...))
	ok.welcomed()
	if got := sessionRemote(t, g, "behind-lb"); got != "198.51.100.9:40003" {
		t.Fatalf("remote %q", got)
	}
	if g.sessions.get("spoofer") != nil {
		t.Fatal("the untrusted source got a session")
	}
}

// TestProxyReload: PROXY protocol turned on by a reload applies to the
// connections accepted after it; one accepted before keeps working.
func TestProxyReload(t *testing.T) {
	cfg := freePorts(Config{})
	g := startGateway(t, cfg)
	old := connected(t, g, "before")
	next := cfg
	next.ProxyProtocolNetworks = loopbackOnly
	rep, err := g.Reload(next)
	if err != nil || len(rep.Changed) != 1 || rep.Changed[0] != "proxy_protocol_networks" || len(rep.RestartRequired) != 0 {
		t.Fatalf("reload: %+v %v", rep, err)
	}
	plain := dial(t, g)
	plain.write(helloBytes(t, "after-plain"))
	plain.expectSilentClose()
	proxied := dial(t, g)
	proxied.write(append(proxyV2("198.51.100.9:40003", "127.0.0.1:7400", -1), helloBytes(t, "after")...))
	proxied.welcomed()
	old.send(protocol.TypePing, 0, 0, []byte("still"))
	if f := old.read(); f.Type != protocol.TypePong {
		t.Fatalf("connection accepted before the reload: %v", f.Type)
	}
}

// TestProxyOffByDefault: without trusted networks a PROXY header is not
// read: it is the start of a frame whose length is far too large (413),
// as docs/operations.md warns for a balancer turned on before its
// gateways.
func TestProxyOffByDefault(t *testing.T) {
	g := startGateway(t, Config{})
	for _, h := range [][]byte{proxyV2("198.51.100.9:40003", "127.0.0.1:7400", -1), []byte("PROXY UNKNOWN\r\n")} {
		d := dial(t, g)
		d.write(h)
		d.expectError(protocol.CodeTooLarge, true)
	}
	if n := g.metrics.proxy.headers["v2"].Get() + g.metrics.proxy.headers["local"].Get(); n != 0 {
		t.Fatalf("%d headers read with the PROXY protocol off", n)
	}
}

// TestProxyConfigInvalid: an invalid prefix is a configuration error.
func TestProxyConfigInvalid(t *testing.T) {
	if _, err := New(Config{ProxyProtocolNetworks: []netip.Prefix{{}}}); err == nil ||
		!strings.Contains(err.Error(), "proxy protocol network 0") {
		t.Fatalf("New with an invalid prefix: %v", err)
	}
}

// haproxyBin is Debian's haproxy, or "" (the test skips unless
// SWITCHYARD_REQUIRE_HAPROXY is set, as make test sets it).
func haproxyBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("SWITCHYARD_REQUIRE_HAPROXY") != "" {
			t.Fatalf("haproxy not found and SWITCHYARD_REQUIRE_HAPROXY is set: %v", err)
		}
		t.Skip("haproxy not installed (apt-get install haproxy; make test-deps installs it)")
	}
	return p
}

// freePort is a loopback port free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// haproxyConfig is the HAProxy configuration docs/operations.md shows
// ("Behind a load balancer: PROXY protocol"), with the test's ports: its
// frontend on port, its one server the gateway at gw, health checks
// every 200 ms, and a maxconn an unprivileged process can have.
func haproxyConfig(t *testing.T, port int, gw string) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(doc), "```\n# haproxy.cfg\n")
	block, _, ok := strings.Cut(block, "```")
	if !ok || !strings.Contains(block, "send-proxy-v2") {
		t.Fatal(`docs/operations.md has no haproxy.cfg block with send-proxy-v2 ("Behind a load balancer")`)
	}
	var out []string
	server := ""
	for _, line := range strings.Split(block, "\n") {
		switch f := strings.Fields(line); {
		case len(f) == 2 && f[0] == "maxconn":
			line = "    maxconn 1000"
		case len(f) == 2 && f[0] == "bind":
			line = fmt.Sprintf("    bind 127.0.0.1:%d", port)
		case len(f) > 3 && f[0] == "server":
			if server != "" {
				continue // one gateway
			}
			f[2] = gw
			f[len(f)-1] = "200ms" // inter
			server = "    " + strings.Join(f, " ")
			line = server
		}
		out = append(out, line)
	}
	if server == "" {
		t.Fatal("docs/operations.md's haproxy.cfg has no server line")
	}
	return strings.Join(out, "\n")
}

// TestProxyHAProxy: Debian's HAProxy in TCP mode with send-proxy-v2 in
// front of the gateway; a device connects to it from 127.0.0.3 and the
// gateway's admin API shows 127.0.0.3 as the device's address. HAProxy's
// health checks reach the gateway as LOCAL headers and are accepted.
func TestProxyHAProxy(t *testing.T) {
	bin := haproxyBin(t)
	g := startGateway(t, Config{ProxyProtocolNetworks: loopbackOnly})
	port := freePort(t)
	cfgFile, cfg := filepath.Join(t.TempDir(), "haproxy.cfg"), haproxyConfig(t, port, g.Addr().String())
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command(bin, "-db", "-f", cfgFile)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy.cfg:\n%s\nhaproxy output:\n%s", cfg, out.String())
		}
	})
	front := fmt.Sprintf("127.0.0.1:%d", port)
	var nc net.Conn
	poll.Until(t, poll.Patience, func() error {
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}}
		var err error
		nc, err = dl.Dial("tcp", front)
		return err
	})
	t.Cleanup(func() { nc.Close() })
	d := &dev{t: t, nc: nc, r: bufio.NewReader(nc)}
	d.write(helloBytes(t, "via-haproxy"))
	d.welcomed()
	remote := sessionRemote(t, g, "via-haproxy")
	if host, _, _ := strings.Cut(remote, ":"); host != "127.0.0.3" || remote != nc.LocalAddr().String() {
		t.Fatalf("admin API shows remote %q, want the device's %s", remote, nc.LocalAddr())
	}
	if n := g.metrics.proxy.headers["v2"].Get(); n < 1 {
		t.Fatalf("switchyard_proxy_headers_total{kind=\"v2\"} %d", n)
	}
	waitFor(t, "a health check (LOCAL header)", func() bool { return g.metrics.proxy.headers["local"].Get() >= 1 })
	for r, m := range g.metrics.proxy.refused {
		if m.Get() != 0 {
			t.Fatalf("refused{%s} %d through HAProxy", r, m.Get())
		}
	}
}
