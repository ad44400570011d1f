package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/server"
)

// selfSigned writes a self-signed certificate for cn (and 127.0.0.1) and
// its key into dir; it serves as its own CA.
func selfSigned(t *testing.T, dir, cn string) (certFile, keyFile string, pair tls.Certificate, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	for file, b := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "EC PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if pair, err = tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return certFile, keyFile, pair, cert
}

// TestClientNativeTLS: the Go client through the gateway's native TLS
// with a client certificate: reliable DATA echoed and ACKed; a client
// whose certificate names another device is refused with 401.
func TestClientNativeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _, gwCert := selfSigned(t, dir, "gateway")
	caFile, _, devPair, _ := selfSigned(t, dir, "tls-dev")
	g := gateway(t, server.Config{TLSCertFile: certFile, TLSKeyFile: keyFile, TLSClientCAFile: caFile})
	roots := x509.NewCertPool()
	roots.AddCert(gwCert)
	conf := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{devPair}}

	c := dial(t, client.Config{Addr: g.Addr().String(), ID: "tls-dev", TLS: conf})
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	for _, msg := range []string{"one", "two"} {
		if err := c.Send(ctx, []byte(msg), true); err != nil {
			t.Fatal(err)
		}
		m, err := c.Recv(ctx)
		if err != nil || string(m.Payload) != msg {
			t.Fatalf("recv %q, %v; want %q", m.Payload, err, msg)
		}
	}

	_, err := client.Dial(ctx, client.Config{Addr: g.Addr().String(), ID: "someone-else", TLS: conf, DisableReconnect: true})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != 401 {
		t.Fatalf("dial with another device's certificate: %v, want 401", err)
	}
}
