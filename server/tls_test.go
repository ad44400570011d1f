package server

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// testPKI makes certificates for the TLS tests: a CA and leaves it signs,
// written as PEM files in a temporary directory.
type testPKI struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{t: t, dir: t.TempDir(), cert: cert, key: key}
	p.write(name+"-ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(name, typ string, der []byte) string {
	p.t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

func (p *testPKI) caFile() string { return filepath.Join(p.dir, p.cert.Subject.CommonName+"-ca.pem") }

func (p *testPKI) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.cert)
	return pool
}

// leaf issues a certificate (server and client use) and writes it and its
// key to name.pem and name-key.pem.
func (p *testPKI) leaf(name string, serial int64, edit func(*x509.Certificate)) (certFile, keyFile string, pair tls.Certificate) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	certFile, keyFile = p.write(name+".pem", "CERTIFICATE", der), p.write(name+"-key.pem", "EC PRIVATE KEY", kder)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		p.t.Fatal(err)
	}
	return certFile, keyFile, pair
}

// tlsGateway starts a gateway with a server certificate from a new CA.
func tlsGateway(t *testing.T, cfg Config) (*Gateway, *testPKI) {
	t.Helper()
	pki := newTestPKI(t, "test-ca")
	cfg.TLSCertFile, cfg.TLSKeyFile, _ = pki.leaf("gateway", 100, nil)
	return startGateway(t, cfg), pki
}

// dialTLS is dial through TLS, the handshake done.
func dialTLS(t *testing.T, g *Gateway, conf *tls.Config) (*dev, error) {
	t.Helper()
	nc, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	tc := tls.Client(nc, conf)
	_ = tc.SetDeadline(time.Now().Add(20 * time.Second))
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return &dev{t: t, nc: tc, r: bufio.NewReader(tc)}, nil
}

func mustDialTLS(t *testing.T, g *Gateway, conf *tls.Config) *dev {
	t.Helper()
	d, err := dialTLS(t, g, conf)
	if err != nil {
		t.Fatalf("tls handshake: %v", err)
	}
	return d
}

func clientTLS(pki *testPKI) *tls.Config {
	return &tls.Config{RootCAs: pki.pool(), ServerName: "localhost"}
}

func tlsResult(g *Gateway, result string) float64 {
	return metric(g, `switchyard_tls_handshakes_total{result="`+result+`"}`)
}

// TestTLSEcho: a Go client over crypto/tls: HELLO, best-effort echo,
// reliable DATA with its ACK; the handshake is counted and timed.
func TestTLSEcho(t *testing.T) {
	g, pki := tlsGateway(t, Config{})
	d := mustDialTLS(t, g, clientTLS(pki))
	if w := d.hello(protocol.Hello{ID: "tls-1"}); w.Session == "" {
		t.Fatalf("welcome %+v", w)
	}
	d.send(protocol.TypeData, 0, 0, []byte("hi"))
	if f := d.read(); f.Type != protocol.TypeData || string(f.Payload) != "hi" {
		t.Fatalf("echo %+v", f)
	}
	d.reliableEcho(1, "r1")
	if tlsResult(g, tlsOK) != 1 || metric(g, "switchyard_tls_handshake_duration_seconds_count") != 1 {
		t.Fatalf("ok %v, timed %v", tlsResult(g, tlsOK), metric(g, "switchyard_tls_handshake_duration_seconds_count"))
	}
	// A plaintext device on the TLS listener does not get a session.
	plain := dial(t, g)
	p, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "plain"})
	plain.send(protocol.TypeHello, 0, 0, p)
	plain.expectClosed()
	waitMetric(t, g, `switchyard_tls_handshakes_total{result="not_tls"}`, 1)
}

// chopConn writes every Write in pieces of 1..7 bytes, so the gateway
// reads TLS records in pieces.
type chopConn struct{ net.Conn }

func (c chopConn) Write(b []byte) (int, error) {
	for i := 0; i < len(b); {
		n := min(len(b)-i, 1+i%7)
		if _, err := c.Conn.Write(b[i : i+n]); err != nil {
			return i, err
		}
		i += n
	}
	return len(b), nil
}

// TestTLSSplitRecordsAndFrames: frames split across TLS records (each
// byte its own record), records split across reads (the ciphertext goes
// out a few bytes per write, TCP_NODELAY), several frames in one record,
// and a frame larger than a record.
func TestTLSSplitRecordsAndFrames(t *testing.T) {
	g, pki := tlsGateway(t, Config{})
	nc, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tc := tls.Client(chopConn{nc}, clientTLS(pki))
	d := &dev{t: t, nc: tc, r: bufio.NewReader(tc)}
	d.hello(protocol.Hello{ID: "split"})

	for _, b := range protocol.AppendFrame(nil, protocol.TypePing, 0, 0, []byte("one byte per record")) {
		d.write([]byte{b})
	}
	if f := d.read(); f.Type != protocol.TypePong || string(f.Payload) != "one byte per record" {
		t.Fatalf("pong %+v", f)
	}
	var many []byte
	for i := range 20 {
		many = protocol.AppendFrame(many, protocol.TypeData, 0, 0, []byte(fmt.Sprint("f", i)))
	}
	d.write(many)
	for i := range 20 {
		if f := d.read(); string(f.Payload) != fmt.Sprint("f", i) {
			t.Fatalf("frame %d: %+v", i, f)
		}
	}
	big := make([]byte, 40<<10) // three records
	for i := range big {
		big[i] = byte(i)
	}
	d.send(protocol.TypeData, 0, 0, big)
	if f := d.read(); !slices.Equal(f.Payload, big) {
		t.Fatalf("40 KB echo: %d bytes back", len(f.Payload))
	}
}

// TestTLSManyHandshakes: more concurrent handshakes than workers all
// complete (the rest wait in the queue, buffering).
func TestTLSManyHandshakes(t *testing.T) {
	g, pki := tlsGateway(t, Config{TLSHandshakeWorkers: 2})
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := dialTLS(t, g, clientTLS(pki))
			if err != nil {
				errs <- err
				return
			}
			p, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: fmt.Sprint("many-", i)})
			if _, err := d.nc.Write(protocol.AppendFrame(nil, protocol.TypeHello, 0, 0, p)); err != nil {
				errs <- err
				return
			}
			f, err := d.tryRead(20 * time.Second)
			if err == nil && f.Type != protocol.TypeWelcome {
				err = fmt.Errorf("got %v %s", f.Type, errText(f))
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := tlsResult(g, tlsOK); got != n {
		t.Fatalf("%v handshakes ok, want %d", got, n)
	}
}

// TestTLSGarbageAndStall: bytes that are not a ClientHello close the
// connection and are counted; so is a handshake input over its bound; a
// client that stops mid-handshake is closed at the handshake deadline.
// Nothing panics.
func TestTLSGarbageAndStall(t *testing.T) {
	g, pki := tlsGateway(t, Config{HandshakeTimeout: 500 * time.Millisecond})
	junk := dial(t, g)
	junk.write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	junk.expectClosed()
	waitMetric(t, g, `switchyard_tls_handshakes_total{result="not_tls"}`, 1)

	// A ClientHello that claims 65,535 bytes, in well-formed 16 KB
	// records: crypto/tls waits for the rest of the message, so only the
	// gateway's bound on handshake input can end it (on a gateway whose
	// handshake deadline a loaded box cannot reach first).
	big, _ := tlsGateway(t, Config{HandshakeTimeout: time.Minute})
	flood := dial(t, big)
	var recs []byte
	for i := range 5 {
		rec := make([]byte, 5+16<<10)
		copy(rec, []byte{22, 3, 1, 0x40, 0x00})
		if i == 0 {
			copy(rec[5:], []byte{1, 0x00, 0xff, 0xff}) // ClientHello, 65,535 bytes
		}
		recs = append(recs, rec...)
	}
	flood.write(recs)
	flood.expectClosed()
	poll.Until(t, poll.Patience, func() error {
		if n := tlsResult(big, tlsTooLarge); n != 1 {
			return fmt.Errorf("too_large handshake results = %v, want 1 (all: %v)", n, tlsResultsOf(big))
		}
		return nil
	})
	// The same a record at a time: the bound is on all a device sent
	// before its handshake completed, not on what is still unread, so a
	// handshake worker that keeps up with the records does not let the
	// message through to crypto/tls (which would fail it as "protocol").
	// The fourth record trips it: the message needs 65,539 bytes.
	slow := dial(t, big)
	size := len(recs) / 5
	for i := range 4 {
		slow.write(recs[i*size : (i+1)*size])
		time.Sleep(20 * time.Millisecond)
	}
	slow.expectClosed()
	poll.Until(t, poll.Patience, func() error {
		if n := tlsResult(big, tlsTooLarge); n != 2 {
			return fmt.Errorf("too_large handshake results = %v, want 2 (all: %v)", n, tlsResultsOf(big))
		}
		return nil
	})

	// The start of a real ClientHello, then silence.
	rec := &recordConn{}
	_ = tls.Client(rec, clientTLS(pki)).Handshake() // fails once the hello is written
	stall := dial(t, g)
	stall.write(rec.buf[:len(rec.buf)/2])
	stall.expectClosed()
	waitMetric(t, g, `switchyard_tls_handshakes_total{result="timeout"}`, 1)
	// And one that never sent a byte.
	idle := dial(t, g)
	idle.expectClosed()
	waitMetric(t, g, `switchyard_tls_handshakes_total{result="timeout"}`, 2)

	// The gateway still serves.
	d := mustDialTLS(t, g, clientTLS(pki))
	d.hello(protocol.Hello{ID: "after-junk"})
}

// recordConn keeps what a tls.Client writes and fails its reads.
type recordConn struct {
	net.Conn
	buf []byte
}

func (r *recordConn) Write(b []byte) (int, error) { r.buf = append(r.buf, b...); return len(b), nil }
func (r *recordConn) Read([]byte) (int, error)    { return 0, net.ErrClosed }
func (r *recordConn) Close() error                { return nil }
func (r *recordConn) SetDeadline(time.Time) error { return nil }
func (r *recordConn) SetWriteDeadline(time.Time) error {
	return nil
}

// TestTLSClientCert: with a client CA, a device presenting a certificate
// for its id gets a session; one signed by another CA fails the TLS
// handshake; one whose certificate names another device gets 401 at
// HELLO. Each mapping (cn, san-dns, san-uri) is checked.
func TestTLSClientCert(t *testing.T) {
	devices := newTestPKI(t, "device-ca")
	other := newTestPKI(t, "other-ca")
	cfg := Config{}
	cfg.TLSClientCAFile = devices.caFile()
	g, pki := tlsGateway(t, cfg)
	conf := func(pair tls.Certificate) *tls.Config {
		c := clientTLS(pki)
		c.Certificates = []tls.Certificate{pair}
		return c
	}
	_, _, good := devices.leaf("dev-a", 2, nil)
	mustDialTLS(t, g, conf(good)).hello(protocol.Hello{ID: "dev-a"})

	_, _, forged := other.leaf("dev-a", 3, nil)
	if d, err := dialTLS(t, g, conf(forged)); err == nil {
		// TLS 1.3: the client's handshake ends before the server checked.
		d.expectClosed()
	}
	waitMetric(t, g, `switchyard_tls_handshakes_total{result="client_cert"}`, 1)
	if d, err := dialTLS(t, g, clientTLS(pki)); err == nil { // no certificate at all
		d.expectClosed()
	}
	waitMetric(t, g, `switchyard_tls_handshakes_total{result="client_cert"}`, 2)

	d := mustDialTLS(t, g, conf(good))
	p, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "dev-b"})
	d.send(protocol.TypeHello, 0, 0, p)
	d.expectError(protocol.CodeUnauthorized, true)
	if n := metric(g, "switchyard_tls_client_cert_rejections_total"); n != 1 {
		t.Fatalf("%v client-cert rejections", n)
	}

	// The SAN mappings, through a reload.
	u, _ := url.Parse("urn:dev:dev-u")
	_, _, san := devices.leaf("not-the-id", 4, func(c *x509.Certificate) {
		c.DNSNames = append(c.DNSNames, "dev-d")
		c.URIs = []*url.URL{u}
	})
	run := g.running
	for _, m := range []struct{ mode, id string }{{CertDeviceSANDNS, "dev-d"}, {CertDeviceSANURI, "urn:dev:dev-u"}} {
		run.TLSClientCertDeviceID = m.mode
		if _, err := g.Reload(run); err != nil {
			t.Fatal(err)
		}
		mustDialTLS(t, g, conf(san)).hello(protocol.Hello{ID: m.id})
		d := mustDialTLS(t, g, conf(san))
		p, _ := protocol.EncodeHello(&protocol.Hello{V: 1, ID: "not-the-id"})
		d.send(protocol.TypeHello, 0, 0, p)
		d.expectError(protocol.CodeUnauthorized, true)
	}
}

// TestTLSReloadCertificate: after the files are rewritten and reloaded a
// new connection sees the new certificate while a session established
// before keeps working; a bad file fails the reload and keeps the
// certificate in force.
func TestTLSReloadCertificate(t *testing.T) {
	pki := newTestPKI(t, "reload-ca")
	cfg := Config{}
	cfg.TLSCertFile, cfg.TLSKeyFile, _ = pki.leaf("gateway", 100, nil)
	g := startGateway(t, cfg)
	serial := func() int64 {
		d := mustDialTLS(t, g, clientTLS(pki))
		return d.nc.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	old := mustDialTLS(t, g, clientTLS(pki))
	old.hello(protocol.Hello{ID: "old"})
	if s := serial(); s != 100 {
		t.Fatalf("serial %d, want 100", s)
	}

	pki.leaf("gateway", 200, nil) // the same paths, new contents
	rep, err := g.Reload(g.running)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.RestartRequired) != 0 {
		t.Fatalf("report %+v", rep)
	}
	if s := serial(); s != 200 {
		t.Fatalf("serial %d after reload, want 200", s)
	}
	old.send(protocol.TypeData, 0, 0, []byte("still here"))
	if f := old.read(); string(f.Payload) != "still here" {
		t.Fatalf("old session: %+v", f)
	}

	if err := os.WriteFile(cfg.TLSCertFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Reload(g.running); err == nil {
		t.Fatal("reload with a bad certificate file succeeded")
	}
	if s := serial(); s != 200 {
		t.Fatalf("serial %d after a failed reload, want 200", s)
	}
	// Turning TLS off is a restart.
	off := g.running
	off.TLSCertFile, off.TLSKeyFile = "", ""
	if rep, err := g.Reload(off); err != nil || !slices.Contains(rep.RestartRequired, "tls_cert_file") {
		t.Fatalf("report %+v, %v", rep, err)
	}
}

// TestTLSIdleHoldsNoGoroutine: idle TLS sessions, far more than the
// handshake workers, hold no goroutine each.
func TestTLSIdleHoldsNoGoroutine(t *testing.T) {
	g, pki := tlsGateway(t, Config{TLSHandshakeWorkers: 2})
	conf := clientTLS(pki)
	d := mustDialTLS(t, g, conf) // workers and pools started
	d.hello(protocol.Hello{ID: "first"})
	before := runtime.NumGoroutine()
	const n = 200
	for i := range n {
		d := mustDialTLS(t, g, conf)
		d.hello(protocol.Hello{ID: fmt.Sprint("idle-", i)})
		// A frame that has only begun, waiting in the gateway.
		d.write(protocol.AppendFrame(nil, protocol.TypeData, 0, 0, make([]byte, 100))[:50])
	}
	waitGoroutinesAtMost(t, before+50, fmt.Sprint(n, " idle TLS sessions"))
}

func TestTLSConfigValidate(t *testing.T) {
	for _, cfg := range []Config{
		{TLSCertFile: "c.pem"},
		{TLSClientCAFile: "ca.pem"},
		{TLSCertFile: "c.pem", TLSKeyFile: "k.pem", TLSClientCertDeviceID: "serial"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	if _, err := New(Config{TLSCertFile: "/nonexistent.pem", TLSKeyFile: "/nonexistent.pem"}); err == nil {
		t.Error("missing certificate file: no error")
	}
}

// TestTLSTrimmed: crypto/tls's read buffers are found (a Go release that
// moved them fails here, see tls_trim.go), and an idle TLS session keeps
// neither the handshake's buffers nor a large record's.
func TestTLSTrimmed(t *testing.T) {
	if !tlsFields.ok {
		t.Fatal("crypto/tls's rawInput, input and hand were not found: its layout changed (tls_trim.go)")
	}
	g, pki := tlsGateway(t, Config{})
	d := mustDialTLS(t, g, clientTLS(pki))
	d.hello(protocol.Hello{ID: "trim"})
	big := make([]byte, 16<<10)
	d.send(protocol.TypeData, 0, 0, big)
	if f := d.read(); len(f.Payload) != len(big) {
		t.Fatalf("echo of %d bytes", len(f.Payload))
	}
	conns := g.sessions.conns()
	if len(conns) != 1 {
		t.Fatalf("%d connections", len(conns))
	}
	c := conns[0]
	c.pmu.Lock()
	defer c.pmu.Unlock()
	p := unsafe.Pointer(c.tls.tc)
	raw := (*bytes.Buffer)(unsafe.Add(p, tlsFields.rawInput))
	hand := (*bytes.Buffer)(unsafe.Add(p, tlsFields.hand))
	if raw.Cap() > tlsKeepInput || hand.Cap() != 0 {
		t.Fatalf("idle TLS session keeps rawInput %d B, hand %d B", raw.Cap(), hand.Cap())
	}
}

// TestTLSHandshakeQueueBound: with every worker in a handshake and the
// queue full, a new connection's handshake is refused and counted; the
// ones waiting are closed at their deadline, not before.
func TestTLSHandshakeQueueBound(t *testing.T) {
	g, pki := tlsGateway(t, Config{TLSHandshakeWorkers: 1, TLSHandshakeQueue: 1, HandshakeTimeout: 2 * time.Second})
	rec := &recordConn{}
	_ = tls.Client(rec, clientTLS(pki)).Handshake()
	half := rec.buf[:len(rec.buf)/2] // a ClientHello that never completes
	stalled := func() *dev {
		d := dial(t, g)
		d.write(half)
		return d
	}
	first := stalled()
	waitMetric(t, g, "switchyard_tls_handshake_workers_busy", 1)
	second := stalled()
	waitMetric(t, g, "switchyard_tls_handshake_queue", 1)
	third := stalled()
	third.expectClosed()
	waitMetric(t, g, `switchyard_tls_handshakes_total{result="queue_full"}`, 1)
	first.expectClosed()
	second.expectClosed()
	waitMetric(t, g, `switchyard_tls_handshakes_total{result="timeout"}`, 2)
	waitMetric(t, g, "switchyard_tls_handshake_queue", 0)
	waitMetric(t, g, "switchyard_tls_handshake_workers_busy", 0)
}

// tlsResultsOf is every TLS handshake result counted, for failure messages.
func tlsResultsOf(g *Gateway) map[string]float64 {
	out := map[string]float64{}
	for _, r := range tlsResults {
		if n := tlsResult(g, r); n != 0 {
			out[r] = n
		}
	}
	return out
}
