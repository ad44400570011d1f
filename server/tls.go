package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/cloudwego/netpoll"
)

// Native TLS on the device listener.
//
// crypto/tls runs over an in-memory transport (tlsPipe) instead of the
// socket, so that no goroutine waits on a connection at rest:
//
//	handshake (once)                         records (every batch, event loop)
//	onRequest ── bytes ──▶ pipe.in           onRequest ──▶ tls.Conn.Read ◀── pipe ◀── netpoll input
//	   │ first bytes: queue ▶ pool worker          │ (until "would block": a partial
//	   ▼                                           │  record waits in crypto/tls)
//	worker: tls.Conn.Handshake, its Reads          ▼ plaintext → the frame loop (frames)
//	block on pipe.in (cond); its Writes        flush: c.out's plaintext → tls.Conn.Write
//	go out at once (writeOut)                        → pipe.wbuf → c.out → write(fd)
//
// crypto/tls cannot resume a handshake after a read error, so the
// handshake runs on a bounded pool of goroutines whose reads block until
// the event loop feeds them; once it is done the pipe turns non-blocking:
// a read with nothing buffered returns a temporary net.Error, on which
// crypto/tls keeps its state (a partial record simply waits for the next
// batch). A connection waiting for a worker only buffers its bytes; past
// the queue bound it is closed and counted.
//
// c.out holds, under wmu, the ciphertext the socket has not taken
// (the first tlsConn.sealed bytes) followed by plaintext frames queued
// since; each flush seals the plaintext (one tls.Conn.Write, so a batch
// of frames becomes as few records as fit) before writing. Plaintext
// queued before the handshake completed (a 503 at accept, a 408) is
// dropped: the device could not read it.

// Client certificate to device id mappings (Config.TLSClientCertDeviceID).
const (
	CertDeviceCN     = "cn"      // the subject's common name
	CertDeviceSANDNS = "san-dns" // any DNS name of the subject alternative names
	CertDeviceSANURI = "san-uri" // any URI of the subject alternative names, in full
)

// TLS handshake results, the result label of switchyard_tls_handshakes_total.
const (
	tlsOK         = "ok"
	tlsTimeout    = "timeout"     // the handshake deadline passed
	tlsNotTLS     = "not_tls"     // the first bytes were not a TLS ClientHello
	tlsClientCert = "client_cert" // no client certificate, or one no configured CA signed
	tlsEOF        = "eof"         // the device closed during the handshake
	tlsQueueFull  = "queue_full"  // more handshakes waiting than TLSHandshakeQueue
	tlsTooLarge   = "too_large"   // handshake input over maxTLSHandshakeInput
	tlsProtocol   = "protocol"    // any other handshake failure (versions, ciphers, alerts)
)

var tlsResults = []string{tlsOK, tlsTimeout, tlsNotTLS, tlsClientCert, tlsEOF, tlsQueueFull, tlsTooLarge, tlsProtocol}

// maxTLSHandshakeInput bounds what a device may send before its handshake
// completes, in total: a ClientHello with a client certificate chain fits
// with room.
const maxTLSHandshakeInput = 64 << 10

// plainBufSize is the pooled buffer plaintext is decrypted into: one
// record's worth, so a batch decrypts record by record.
const plainBufSize = 16 << 10

var plainPool = sync.Pool{New: func() any { b := make([]byte, 0, plainBufSize); return &b }}

// errWouldBlock is the pipe's answer when it has no input after the
// handshake: temporary, so crypto/tls keeps its state and returns it.
var errWouldBlock net.Error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tls pipe: no input buffered" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// tlsSettings are the certificate and client CAs new handshakes use,
// replaced whole by a reload.
type tlsSettings struct {
	conf     *tls.Config
	serial   string // of the leaf certificate, for the log
	certMode string // Config.TLSClientCertDeviceID; "" without client certificates
}

// loadTLS reads the certificate, key and client CA files of cfg.
func loadTLS(cfg *Config) (*tlsSettings, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("server: tls: certificate %s, key %s: %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
	}
	conf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// Devices send small frames; full-size records from the start save
		// the per-record overhead on the rare large writes.
		DynamicRecordSizingDisabled: true,
	}
	st := &tlsSettings{conf: conf, serial: cert.Leaf.SerialNumber.String()}
	if cfg.TLSClientCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("server: tls: client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("server: tls: client CA %s: no PEM certificate in it", cfg.TLSClientCAFile)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
		st.certMode = cfg.TLSClientCertDeviceID
	}
	return st, nil
}

// validateTLS checks the TLS settings (the files are read by New and
// Reload).
func (cfg *Config) validateTLS() []error {
	var errs []error
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls cert file and tls key file: give both or neither"))
	}
	if cfg.TLSClientCAFile != "" && cfg.TLSCertFile == "" {
		errs = append(errs, errors.New("tls client ca file needs tls cert file and tls key file"))
	}
	switch cfg.TLSClientCertDeviceID {
	case "", CertDeviceCN, CertDeviceSANDNS, CertDeviceSANURI:
	default:
		errs = append(errs, fmt.Errorf("tls client cert device id %q: want %s, %s or %s",
			cfg.TLSClientCertDeviceID, CertDeviceCN, CertDeviceSANDNS, CertDeviceSANURI))
	}
	if cfg.TLSHandshakeWorkers < 0 || cfg.TLSHandshakeQueue < 0 {
		errs = append(errs, errors.New("tls handshake workers and queue must not be negative"))
	}
	return errs
}

// tlsFront is the gateway's TLS: the settings in force and the
// handshake pool.
type tlsFront struct {
	cur   atomic.Pointer[tlsSettings]
	base  *tls.Config // hands each handshake the settings in force
	queue chan *conn
	stop  chan struct{}
	*tlsMetrics
}

// tlsMetrics are the TLS series, registered whether or not the listener
// speaks TLS (a dashboard finds them at zero).
type tlsMetrics struct {
	waiting     atomic.Int64 // connections queued for a worker
	busy        atomic.Int64 // workers in a handshake
	results     map[string]*metrics.Counter
	duration    *metrics.PrometheusHistogram
	certRejects *metrics.Counter
}

func newTLSMetrics(s *metrics.Set) *tlsMetrics {
	m := &tlsMetrics{
		results:     map[string]*metrics.Counter{},
		duration:    s.NewPrometheusHistogramExt("switchyard_tls_handshake_duration_seconds", handshakeBuckets),
		certRejects: s.NewCounter("switchyard_tls_client_cert_rejections_total"),
	}
	for _, r := range tlsResults {
		m.results[r] = s.NewCounter(`switchyard_tls_handshakes_total{result="` + r + `"}`)
	}
	s.NewGauge("switchyard_tls_handshake_queue", func() float64 { return float64(m.waiting.Load()) })
	s.NewGauge("switchyard_tls_handshake_workers_busy", func() float64 { return float64(m.busy.Load()) })
	return m
}

// newTLSFront loads cfg's files; nil when cfg has no certificate.
func newTLSFront(cfg *Config, m *tlsMetrics) (*tlsFront, error) {
	if cfg.TLSCertFile == "" {
		return nil, nil
	}
	st, err := loadTLS(cfg)
	if err != nil {
		return nil, err
	}
	f := &tlsFront{
		queue:      make(chan *conn, cfg.TLSHandshakeQueue),
		stop:       make(chan struct{}),
		tlsMetrics: m,
	}
	f.cur.Store(st)
	f.base = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return f.cur.Load().conf, nil
	}}
	return f, nil
}

// start runs the handshake workers; they end when stopTLS closes stop.
func (g *Gateway) startTLS() {
	if g.tls == nil {
		return
	}
	for range g.cfg.TLSHandshakeWorkers {
		g.wg.Add(1)
		go g.tlsWorker()
	}
}

// stopTLS ends the workers. Called once the connections are closed: a
// worker in a handshake returns when its connection's pipe closes.
func (g *Gateway) stopTLS() {
	if g.tls != nil {
		close(g.tls.stop)
	}
}

func (g *Gateway) tlsWorker() {
	defer g.wg.Done()
	for {
		select {
		case <-g.tls.stop:
			return
		case c := <-g.tls.queue:
			g.tls.waiting.Add(-1)
			g.tls.busy.Add(1)
			c.tlsHandshake()
			g.tls.busy.Add(-1)
		}
	}
}

// reloadTLS re-reads the files of next (a reload always does: the paths
// may be the same with new contents). New handshakes use what it
// returns; connections already up keep theirs.
func (g *Gateway) reloadTLS(next *Config) (*tlsSettings, error) {
	if g.tls == nil || next.TLSCertFile == "" {
		return nil, nil
	}
	return loadTLS(next)
}

// tlsConn is a device connection's TLS state.
type tlsConn struct {
	c           *conn
	tc          *tls.Conn
	established atomic.Bool // the handshake completed; set under mu
	sealed      int         // under c.wmu: bytes at the front of c.out already encrypted
	leaf        *x509.Certificate
	src         frameInput // under c.pmu, during a batch: netpoll's input, read directly
	plain       plainInput // under c.pmu: the batch's plaintext, as the frame loop's input

	mu       sync.Mutex
	hs       *sync.Cond // handshake only: the worker waits on it for input
	in       []byte     // ciphertext not yet read by crypto/tls; nil when none
	inTotal  int        // ciphertext received into in, read or not (maxTLSHandshakeInput)
	wbuf     *[]byte    // ciphertext crypto/tls wrote, not yet moved to c.out
	closed   bool
	queued   bool // handed to the pool (at the first bytes)
	timedOut bool
}

// newTLSConn prepares the TLS of an accepted connection; nothing runs
// until its first bytes arrive.
func newTLSConn(c *conn, f *tlsFront) *tlsConn {
	t := &tlsConn{c: c}
	t.hs = sync.NewCond(&t.mu)
	t.tc = tls.Server((*tlsPipe)(t), f.base)
	return t
}

// tlsInput takes a batch of ciphertext from netpoll: before the
// handshake completed it is buffered for the worker; after, it is
// decrypted and its frames handled. The caller holds pmu.
func (c *conn) tlsInput(r netpoll.Reader, b *batch) {
	t := c.tls
	if !t.established.Load() {
		c.tlsBuffer(r)
		return
	}
	t.src = r
	c.tlsRead(b)
	t.src = nil
	_ = r.Release()
}

// tlsBuffer moves handshake input to the pipe and queues the connection
// for a worker at its first bytes.
func (c *conn) tlsBuffer(r netpoll.Reader) {
	t, f := c.tls, c.g.tls
	p, err := r.Next(r.Len())
	if err != nil {
		return
	}
	t.mu.Lock()
	// The bound is on everything sent before the handshake completed, not
	// on what is still unread: a worker that keeps up would otherwise let
	// an oversized handshake through to crypto/tls, as long as it came
	// slowly enough.
	over := t.inTotal+len(p) > maxTLSHandshakeInput
	if !over {
		// The handshake may have completed since established was read:
		// the bytes then wait for the worker's read, which follows.
		t.in = append(t.in, p...)
		t.inTotal += len(p)
		if t.hs != nil {
			t.hs.Signal()
		}
	}
	first := !t.queued
	t.queued = true
	t.mu.Unlock()
	_ = r.Release()
	if over {
		c.tlsFailed(tlsTooLarge)
		return
	}
	if !first {
		return
	}
	select {
	case f.queue <- c:
		f.waiting.Add(1)
	default:
		c.tlsFailed(tlsQueueFull)
	}
}

// tlsFailed counts a failed handshake and closes the connection.
func (c *conn) tlsFailed(result string) {
	c.g.tls.results[result].Inc()
	c.shut(reasonTLS)
}

// tlsHandshake runs on a pool worker: the handshake, then the frames that
// came with its last flight.
func (c *conn) tlsHandshake() {
	t, f := c.tls, c.g.tls
	err := t.tc.Handshake()
	if err != nil {
		t.mu.Lock()
		result := tlsFailure(err, t.timedOut)
		t.mu.Unlock()
		if result == tlsTimeout {
			f.results[tlsTimeout].Inc() // the 408 closed it and counted the rest
			return
		}
		c.tlsFailed(result)
		return
	}
	if st := t.tc.ConnectionState(); len(st.PeerCertificates) > 0 {
		t.leaf = st.PeerCertificates[0]
	}
	trimTLS(t.tc, 0) // the handshake's buffers (tls_trim.go)
	t.mu.Lock()
	t.established.Store(true)
	t.hs = nil
	t.mu.Unlock()
	f.results[tlsOK].Inc()
	f.duration.Update(float64(time.Now().UnixNano()-c.acceptNs) / 1e9)
	// The device may have sent its HELLO right behind its Finished: those
	// bytes wait in the pipe and no new input may come to read them.
	c.pmu.Lock()
	if !c.releaseDone {
		b := batch{start: time.Now()}
		c.tlsRead(&b)
		c.flush()
		b.count(c.g)
	}
	c.unlockHandler()
}

// tlsFailure names a handshake error's result.
func tlsFailure(err error, timedOut bool) string {
	var rh tls.RecordHeaderError
	var cv *tls.CertificateVerificationError
	var ae tls.AlertError
	switch {
	case timedOut:
		return tlsTimeout
	case errors.As(err, &rh):
		return tlsNotTLS
	case errors.As(err, &cv), errors.As(err, &ae) && (ae == 116 || ae == 42): // certificate_required, bad_certificate
		return tlsClientCert
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return tlsEOF
	}
	if s := err.Error(); slices.Contains([]string{"tls: client didn't provide a certificate"}, s) {
		return tlsClientCert
	}
	return tlsProtocol
}

// tlsRead decrypts what is buffered and handles its frames, one plaintext
// buffer at a time. The caller holds pmu.
func (c *conn) tlsRead(b *batch) {
	t := c.tls
	buf := plainPool.Get().(*[]byte)
	p := (*buf)[:0]
	var err error
	for err == nil && !c.isClosing() {
		var n int
		n, err = t.tc.Read(p[len(p):cap(p)])
		p = p[:len(p)+n]
		if len(p) == cap(p) || err != nil {
			c.plainFrames(p, b)
			p = p[:0]
		}
	}
	*buf = p[:0]
	plainPool.Put(buf)
	trimTLS(t.tc, tlsKeepInput)
	var ne net.Error
	switch {
	case err == nil, errors.As(err, &ne) && ne.Temporary():
	case errors.Is(err, io.EOF): // close_notify
		c.shut(reasonPeer)
	default: // a record that does not decrypt, an alert
		c.writeOut()
		c.shut(reasonTLS)
	}
}

// plainFrames runs the frame loop over decrypted bytes.
func (c *conn) plainFrames(p []byte, b *batch) {
	if len(p) == 0 {
		return
	}
	c.tls.plain = plainInput{b: p}
	c.frames(&c.tls.plain, b)
	c.tls.plain = plainInput{}
}

// sealLocked encrypts the plaintext queued in c.out and appends the
// ciphertext crypto/tls produced (this and any earlier: handshake
// flights, alerts) behind what the socket has yet to take. The caller
// holds wmu.
func (t *tlsConn) sealLocked() {
	c := t.c
	if c.out != nil && len(*c.out) > t.sealed {
		if t.established.Load() {
			// Write only fails once the connection failed; the frames are
			// then lost with it.
			_, _ = t.tc.Write((*c.out)[t.sealed:])
		}
		*c.out = (*c.out)[:t.sealed]
	}
	t.mu.Lock()
	w := t.wbuf
	t.wbuf = nil
	t.mu.Unlock()
	if w == nil {
		return
	}
	if c.out == nil {
		c.out = w
	} else {
		*c.out = append(*c.out, *w...)
		*w = (*w)[:0]
		outPool.Put(w)
	}
	t.sealed = len(*c.out)
}

// markTimeout notes that the handshake deadline closed the connection; a
// connection that never sent a byte was never queued, so it counts here.
func (t *tlsConn) markTimeout() {
	t.mu.Lock()
	t.timedOut = true
	queued := t.queued
	t.mu.Unlock()
	if !queued {
		t.c.g.tls.results[tlsTimeout].Inc()
	}
}

// close wakes a worker waiting for input and drops the buffers. Called
// by the close callback.
func (t *tlsConn) close() {
	t.mu.Lock()
	t.closed = true
	t.in = nil
	if t.wbuf != nil {
		*t.wbuf = (*t.wbuf)[:0]
		outPool.Put(t.wbuf)
		t.wbuf = nil
	}
	if t.hs != nil {
		t.hs.Broadcast()
	}
	t.mu.Unlock()
}

// certDevice checks the HELLO's device id against the client certificate
// the connection was established with, as the settings in force map it.
// No client certificate (the listener does not ask for one): nothing to
// check.
func (t *tlsConn) certDevice(f *tlsFront, id string) bool {
	mode := f.cur.Load().certMode
	if t.leaf == nil || mode == "" { // no client CA (any more: a reload removed it)
		return true
	}
	switch mode {
	case CertDeviceSANDNS:
		return slices.Contains(t.leaf.DNSNames, id)
	case CertDeviceSANURI:
		return slices.ContainsFunc(t.leaf.URIs, func(u *url.URL) bool { return u.String() == id })
	default:
		return t.leaf.Subject.CommonName == id
	}
}

// tlsPipe is the net.Conn crypto/tls runs over (tlsConn's own memory).
type tlsPipe tlsConn

// Read hands crypto/tls what is buffered: during the handshake it waits
// for input; after, it reads the pipe's leftovers, then the batch's
// netpoll input, and says "would block" when both are empty.
func (p *tlsPipe) Read(b []byte) (int, error) {
	t := (*tlsConn)(p)
	t.mu.Lock()
	for len(t.in) == 0 && !t.closed && !t.established.Load() {
		t.hs.Wait()
	}
	if len(t.in) > 0 {
		n := copy(b, t.in)
		t.in = t.in[n:]
		if len(t.in) == 0 {
			t.in = nil
		}
		t.mu.Unlock()
		return n, nil
	}
	closed := t.closed
	t.mu.Unlock()
	if closed {
		return 0, io.EOF
	}
	if t.src != nil && t.src.Len() > 0 {
		in, err := t.src.Next(min(len(b), t.src.Len()))
		if err != nil {
			return 0, err
		}
		return copy(b, in), nil
	}
	return 0, errWouldBlock
}

// Write keeps crypto/tls's ciphertext for the next flush; during the
// handshake it flushes at once (the worker's flight must go out).
func (p *tlsPipe) Write(b []byte) (int, error) {
	t := (*tlsConn)(p)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return 0, net.ErrClosed
	}
	if t.wbuf == nil {
		t.wbuf = outPool.Get().(*[]byte)
	}
	*t.wbuf = append(*t.wbuf, b...)
	hs := !t.established.Load()
	t.mu.Unlock()
	if hs {
		t.c.writeOut()
	}
	return len(b), nil
}

func (p *tlsPipe) Close() error                     { return nil }
func (p *tlsPipe) LocalAddr() net.Addr              { return p.c.nc.LocalAddr() }
func (p *tlsPipe) RemoteAddr() net.Addr             { return p.c.nc.RemoteAddr() }
func (p *tlsPipe) SetDeadline(time.Time) error      { return nil }
func (p *tlsPipe) SetReadDeadline(time.Time) error  { return nil }
func (p *tlsPipe) SetWriteDeadline(time.Time) error { return nil }
func defaultTLSHandshakeWorkers() int               { return 4 * runtime.GOMAXPROCS(0) }
func (p *plainInput) Len() int                      { return len(p.b) - p.off }
func (p *plainInput) Release() error                { return nil }
func (p *plainInput) Peek(n int) ([]byte, error)    { return p.take(n, false) }
func (p *plainInput) Next(n int) ([]byte, error)    { return p.take(n, true) }
func (p *plainInput) take(n int, adv bool) ([]byte, error) {
	if n < 0 || n > p.Len() {
		return nil, io.ErrUnexpectedEOF
	}
	s := p.b[p.off : p.off+n]
	if adv {
		p.off += n
	}
	return s, nil
}

// plainInput is decrypted input as the frame loop reads it.
type plainInput struct {
	b   []byte
	off int
}
