package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// LinkTLS builds the TLS configuration of the links between gateways and
// shards from the link_tls_* files (docs/links.md "TLS"); nil, nil when
// none is set (plain TCP). server says which side: the shard (server)
// presents its certificate, required, and with a CA requires every
// gateway to present one the CA signed (mutual TLS); the gateway (client)
// verifies each shard's certificate against the CA, required, for the
// host of the shard's link address, and presents its own certificate
// when given. TLS 1.3 only: both ends are this program.
func LinkTLS(certFile, keyFile, caFile string, server bool) (*tls.Config, error) {
	if certFile == "" && keyFile == "" && caFile == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("link_tls_cert_file and link_tls_key_file go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("link_tls_cert_file, link_tls_key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	var pool *x509.CertPool
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("link_tls_ca_file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("link_tls_ca_file %s: no PEM certificate in it", caFile)
		}
	}
	switch {
	case server && certFile == "":
		return nil, errors.New("link TLS on a shard needs link_tls_cert_file and link_tls_key_file (its certificate)")
	case server && pool != nil:
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	case !server && pool == nil:
		return nil, errors.New("link TLS on a gateway needs link_tls_ca_file (to verify the shards' certificates)")
	case !server:
		cfg.RootCAs = pool
	}
	return cfg, nil
}
