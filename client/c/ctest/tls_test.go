package ctest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/poll"
)

// tlsFront is one way a C device reaches a gateway over TLS; each is a
// subtest of TestTLSDevice (the same scenario and the wrong-CA case).
// HAProxy terminating TLS is the recommended front (issue 12); a gateway
// with native TLS is the other.
type tlsFront struct {
	name string
	// gatewayArgs are flags added to `switchyard gateway` (nil: none).
	gatewayArgs func(p *testPKI) []string
	// native: the device talks TLS to the gateway itself; otherwise HAProxy
	// terminates TLS in front of it.
	native bool
	// haproxyBind and haproxyServer are options appended to HAProxy's
	// `bind 127.0.0.1:PORT ssl crt FILE` and `server gw GATEWAY` lines.
	haproxyBind   func(p *testPKI) string
	haproxyServer string
	// clientCert: the device presents pki's client certificate.
	clientCert bool
	// deviceID, when set, is the id the device says HELLO with (a
	// gateway mapping the client certificate to the device id wants the
	// certificate's); default "c-tls-" + name.
	deviceID string
}

// tlsFronts are the fronts tested: HAProxy terminating TLS, with and
// without a client certificate and with the PROXY protocol v2 to the
// gateway (a TLS-terminating load balancer), and the gateway's native TLS
// (docs/tls.md).
var tlsFronts = []tlsFront{
	{name: "haproxy"},
	{
		name:        "haproxy-client-cert",
		haproxyBind: func(p *testPKI) string { return "ca-file " + p.ca + " verify required" },
		clientCert:  true,
	},
	{
		name: "haproxy-proxy-v2", haproxyServer: "send-proxy-v2",
		gatewayArgs: func(*testPKI) []string { return []string{"--proxy-protocol-networks", "127.0.0.1/32"} },
	},
	{
		name: "native", native: true,
		gatewayArgs: func(p *testPKI) []string {
			return []string{"--tls-cert-file", p.serverCert, "--tls-key-file", p.serverKey}
		},
	},
	{
		name: "native-client-cert", native: true, clientCert: true, deviceID: tlsClientCN,
		gatewayArgs: func(p *testPKI) []string {
			return []string{"--tls-cert-file", p.serverCert, "--tls-key-file", p.serverKey, "--tls-client-ca-file", p.ca}
		},
	},
}

// tlsClientCN is the common name of pki's client certificate: the device
// id a gateway mapping certificates by CN (its default) accepts with it.
const tlsClientCN = "c-tls-device"

// tlsServerName is the gateway's name in its certificate; the device
// sends it as SNI and verifies it (it connects to 127.0.0.1).
const tlsServerName = "gateway.test"

// TestTLSDevice runs examples/device_tls.c (OpenSSL as the C client's
// transport) through each front: a handshake with a token, reliable DATA
// echoed and ACKed, a resume of the same session after the test cuts the
// TLS connection, a clean exit; and with the wrong CA, a certificate
// verification error and exit 1, no sanitizer report.
func TestTLSDevice(t *testing.T) {
	t.Parallel()
	cProgs(t)
	tlsProgs(t)
	pki := newPKI(t)
	const secret = "c-tls secret"
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range tlsFronts {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"--auth-secret-file", secretFile}
			if f.gatewayArgs != nil {
				args = append(args, f.gatewayArgs(pki)...)
			}
			g := startGateway(t, args...)
			target := g.addr
			if !f.native {
				target = startHAProxy(t, pki, g.addr, f).addr
			}
			devArgs := []string{"-s", secretFile, "--servername", tlsServerName}
			if f.clientCert {
				devArgs = append(devArgs, "--cert", pki.clientCert, "--key", pki.clientKey)
			}
			t.Run("resume", func(t *testing.T) {
				id := f.deviceID
				if id == "" {
					id = "c-tls-" + f.name
				}
				tlsResume(t, target, append(devArgs, "--ca", pki.ca), id)
			})
			t.Run("wrong-ca", func(t *testing.T) {
				tlsWrongCA(t, target, append(devArgs, "--ca", pki.wrongCA), "c-tls-bad-"+f.name)
			})
			if f.clientCert {
				t.Run("no-client-cert", func(t *testing.T) {
					// the front refuses the handshake; the device retries
					// (not a verification error of its own) until killed
					d := startDevice(t, "-s", secretFile, "--servername", tlsServerName, "--ca", pki.ca, target, "c-tls-nocert")
					d.waitErr(t, "alert certificate required")
					if strings.Contains(d.stderr.String(), "connected to") {
						t.Fatalf("a session without a client certificate:\n%s", d.stderr.String())
					}
				})
			}
		})
	}
}

var welcomeLine = regexp.MustCompile(`connected to \S+, session (\S+)( \(resumed\))?`)

// tlsResume: echo through TLS, the connection cut under the device, the
// same session resumed through a new TLS connection, exit 0 once stdin is
// closed and every line was ACKed.
func tlsResume(t *testing.T, target string, args []string, id string) {
	cut := startCutter(t, target)
	d := startDevice(t, append(args, cut.addr(), id)...)
	d.line(t, "first")
	d.waitOut(t, "< first\n")
	first := welcomeLine.FindAllStringSubmatch(d.stderr.String(), -1)
	if len(first) != 1 || first[0][2] != "" {
		t.Fatalf("want one new session, got %q\n%s", first, d.stderr.String())
	}
	if n := cut.cut(); n == 0 {
		t.Fatalf("no connection to cut\n%s", d.stderr.String())
	}
	d.waitErr(t, "disconnected")
	d.line(t, "second")
	d.waitOut(t, "< second\n")
	poll.Until(t, poll.Patience, func() error {
		w := welcomeLine.FindAllStringSubmatch(d.stderr.String(), -1)
		if len(w) < 2 || w[len(w)-1][1] != first[0][1] || w[len(w)-1][2] == "" {
			return fmt.Errorf("session %s not resumed:\n%s", first[0][1], d.stderr.String())
		}
		return nil
	})
	if err := d.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t); code != 0 {
		t.Fatalf("device_tls exit %d (lines not ACKed?)\n%s\n%s", code, d.stdout.String(), d.stderr.String())
	}
	if strings.Count(d.stdout.String(), "< first\n") != 1 || strings.Count(d.stdout.String(), "< second\n") != 1 {
		t.Fatalf("want each line echoed once:\n%s", d.stdout.String())
	}
	t.Logf("device_tls:\n%s", d.stderr.String())
}

// tlsWrongCA: a gateway certificate from another CA is a verification
// error the device reports and stops on.
func tlsWrongCA(t *testing.T, target string, args []string, id string) {
	d := startDevice(t, append(args, target, id)...)
	code := d.wait(t)
	out := d.stdout.String() + d.stderr.String()
	if code != 1 || !strings.Contains(out, "TLS certificate verify failed") {
		t.Fatalf("want exit 1 with a verification error, got exit %d:\n%s", code, out)
	}
	if strings.Contains(out, "Sanitizer") || strings.Contains(out, "runtime error") {
		t.Fatalf("sanitizer report:\n%s", out)
	}
}

// ---- the TLS toolchain ----

var tlsBuild struct {
	once   sync.Once
	device string
	skip   string
	err    error
}

// tlsProgs builds examples/device_tls.c (after cProgs); without OpenSSL's
// headers (Debian's libssl-dev) or HAProxy the test skips, unless
// SWITCHYARD_REQUIRE_CC=1 (make test-c installs both).
func tlsProgs(t *testing.T) {
	t.Helper()
	tlsBuild.once.Do(buildTLSProgs)
	skip := tlsBuild.skip
	if skip == "" && haproxyPath() == "" {
		skip = "haproxy not found: install Debian's haproxy or run make test-c as root"
	}
	if skip != "" {
		if os.Getenv("SWITCHYARD_REQUIRE_CC") == "1" {
			t.Fatalf("%s (SWITCHYARD_REQUIRE_CC=1)", skip)
		}
		t.Skip(skip)
	}
	if tlsBuild.err != nil {
		t.Fatal(tlsBuild.err)
	}
}

func buildTLSProgs() {
	cc := compiler()
	probe := filepath.Join(progs.dir, "probe.c")
	src := "#include <openssl/ssl.h>\nint main(void) { return OPENSSL_init_ssl(0, NULL) != 1; }\n"
	if err := os.WriteFile(probe, []byte(src), 0o600); err != nil {
		tlsBuild.err = err
		return
	}
	if out, err := exec.Command(cc, "-o", filepath.Join(progs.dir, "probe"), probe, "-lssl", "-lcrypto").CombinedOutput(); err != nil {
		tlsBuild.skip = fmt.Sprintf("OpenSSL's headers or libraries not found (install Debian's libssl-dev or run make test-c as root): %v\n%s", err, out)
		return
	}
	tlsBuild.device = filepath.Join(progs.dir, "device_tls")
	args := append(append([]string{}, cFlags...), "-o", tlsBuild.device,
		filepath.Join("..", "examples", "device_tls.c"), filepath.Join("..", "switchyard.c"), "-lssl", "-lcrypto")
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		tlsBuild.err = fmt.Errorf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, out)
	}
}

// haproxyPath finds haproxy, also in /usr/sbin (not in every user's PATH).
func haproxyPath() string {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	return ""
}

// ---- certificates ----

// testPKI is a CA, a server certificate from it for tlsServerName and
// 127.0.0.1, a client certificate from it, and another CA; every file PEM.
type testPKI struct {
	ca, wrongCA           string
	serverCert, serverKey string // for a gateway's native TLS
	haproxyCrt            string // server certificate, key and CA: HAProxy's `crt`
	clientCert, clientKey string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{
		ca: filepath.Join(dir, "ca.pem"), wrongCA: filepath.Join(dir, "wrong-ca.pem"),
		serverCert: filepath.Join(dir, "server.pem"), serverKey: filepath.Join(dir, "server-key.pem"),
		haproxyCrt: filepath.Join(dir, "haproxy.pem"),
		clientCert: filepath.Join(dir, "client.pem"), clientKey: filepath.Join(dir, "client-key.pem"),
	}
	caCert, caKey, caPEM := makeCert(t, "switchyard test CA", nil, nil, func(c *x509.Certificate) {
		c.IsCA = true
		c.BasicConstraintsValid = true
		c.KeyUsage = x509.KeyUsageCertSign
	})
	_, _, wrongPEM := makeCert(t, "switchyard other CA", nil, nil, func(c *x509.Certificate) {
		c.IsCA = true
		c.BasicConstraintsValid = true
		c.KeyUsage = x509.KeyUsageCertSign
	})
	_, srvKey, srvPEM := makeCert(t, tlsServerName, caCert, caKey, func(c *x509.Certificate) {
		c.DNSNames = []string{tlsServerName, "localhost"}
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	_, cliKey, cliPEM := makeCert(t, tlsClientCN, caCert, caKey, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	srvKeyPEM, cliKeyPEM := keyPEM(t, srvKey), keyPEM(t, cliKey)
	for file, data := range map[string][]byte{
		p.ca: caPEM, p.wrongCA: wrongPEM,
		p.serverCert: srvPEM, p.serverKey: srvKeyPEM,
		p.haproxyCrt: concat(srvPEM, srvKeyPEM, caPEM),
		p.clientCert: cliPEM, p.clientKey: cliKeyPEM,
	} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// makeCert makes an ECDSA P-256 certificate for cn, signed by parent (nil:
// self-signed), valid from an hour ago for a day.
func makeCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey,
	edit func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	edit(tmpl)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ---- HAProxy ----

type haproxy struct {
	*proc
	addr string
}

// haproxyConfig is the tested configuration (client/c/README.md shows it):
// TLS terminated on bind, plain TCP (or PROXY v2 with send-proxy-v2) to
// the gateway. The timeouts are longer than the protocol's heartbeats.
const haproxyConfig = `global
    maxconn 1000
    nbthread 1

defaults
    mode tcp
    timeout connect 5s
    timeout client 5m
    timeout server 5m

frontend devices
    bind %s ssl crt %s %s
    default_backend gateways

backend gateways
    server gw %s %s
`

// startHAProxy starts haproxy in the foreground in front of gateway, on a
// port it picks; t.Cleanup kills it by its PID. A port taken between the
// pick and haproxy's bind is retried with another.
func startHAProxy(t *testing.T, pki *testPKI, gateway string, f tlsFront) *haproxy {
	t.Helper()
	bind := ""
	if f.haproxyBind != nil {
		bind = f.haproxyBind(pki)
	}
	var last string
	for range 5 {
		addr := pickAddr(t)
		cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
		text := fmt.Sprintf(haproxyConfig, addr, pki.haproxyCrt, bind, gateway, f.haproxyServer)
		if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		h := &haproxy{proc: startProc(t, "haproxy with\n"+text, haproxyPath(), "-db", "-f", cfg), addr: addr}
		exited := false
		poll.Until(t, poll.Patience, func() error {
			if h.exited() {
				exited = true
				return nil
			}
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return fmt.Errorf("haproxy not listening on %s: %v\n%s", addr, err, h.log.String())
			}
			return c.Close()
		})
		if !exited {
			return h
		}
		last = h.log.String()
		if !strings.Contains(last, "cannot bind") {
			break
		}
	}
	t.Fatalf("haproxy did not start:\n%s", last)
	return nil
}

// pickAddr returns a loopback address that was free a moment ago.
func pickAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// ---- a connection cutter ----

// cutter forwards TCP connections to a target and can cut them all, as a
// lost network does: the TLS connection ends under the device, the
// listener stays.
type cutter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool // the test ended: no more connections
	wg     sync.WaitGroup
}

func startCutter(t *testing.T, target string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cut()
		c.wg.Wait()
	})
	return c
}

func (c *cutter) addr() string { return c.ln.Addr().String() }

func (c *cutter) accept() {
	defer c.wg.Done()
	for {
		in, err := c.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			_ = in.Close()
			continue
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			_ = in.Close()
			_ = out.Close()
			continue
		}
		c.conns[in] = struct{}{}
		c.conns[out] = struct{}{}
		c.mu.Unlock()
		c.wg.Add(2)
		go c.pipe(in, out)
		go c.pipe(out, in)
	}
}

// pipe copies src to dst; when either side ends, both are closed.
func (c *cutter) pipe(dst, src net.Conn) {
	defer c.wg.Done()
	_, _ = io.Copy(dst, src)
	c.mu.Lock()
	delete(c.conns, dst)
	delete(c.conns, src)
	c.mu.Unlock()
	_ = dst.Close()
	_ = src.Close()
}

// cut closes every forwarded connection and returns how many pairs it cut.
func (c *cutter) cut() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.conns {
		_ = conn.Close()
	}
	n := len(c.conns) / 2
	clear(c.conns)
	return n
}

// ---- the device process ----

type device struct {
	cmd            *exec.Cmd
	stdin          io.WriteCloser
	stdout, stderr *syncBuffer
	done           chan struct{}
	err            error
}

// startDevice starts device_tls with args; its stdout and stderr are
// collected, t.Cleanup kills it by its PID if it still runs.
func startDevice(t *testing.T, args ...string) *device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	d := &device{stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.CommandContext(ctx, tlsBuild.device, args...)
	d.cmd.Stdout = d.stdout
	d.cmd.Stderr = d.stderr
	stdin, err := d.cmd.StdinPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	d.stdin = stdin
	if err := d.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.done
		cancel()
		if t.Failed() {
			t.Logf("device_tls %v:\nstdout:\n%s\nstderr:\n%s", args, d.stdout.String(), d.stderr.String())
		}
	})
	return d
}

func (d *device) line(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(d.stdin, s+"\n"); err != nil {
		t.Fatal(err)
	}
}

func (d *device) waitOut(t *testing.T, s string) { d.waitFor(t, d.stdout, s) }
func (d *device) waitErr(t *testing.T, s string) { d.waitFor(t, d.stderr, s) }

func (d *device) waitFor(t *testing.T, b *syncBuffer, s string) {
	t.Helper()
	poll.Until(t, poll.Patience, func() error {
		if strings.Contains(b.String(), s) {
			return nil
		}
		select {
		case <-d.done:
			t.Fatalf("device_tls exited (%v) before %q:\n%s\n%s", d.err, s, d.stdout.String(), d.stderr.String())
		default:
		}
		return fmt.Errorf("no %q yet:\n%s\n%s", s, d.stdout.String(), d.stderr.String())
	})
}

// wait waits for the device to exit and returns its exit code.
func (d *device) wait(t *testing.T) int {
	t.Helper()
	<-d.done
	var exit *exec.ExitError
	if errors.As(d.err, &exit) {
		return exit.ExitCode()
	}
	if d.err != nil {
		t.Fatalf("device_tls: %v", d.err)
	}
	return 0
}
