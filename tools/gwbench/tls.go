package main

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// dial connects to addr from the source address of connection i; with
// --tls the TLS handshake is done before it returns (a fresh one per
// connection: no session resumption, so every handshake is full).
func (o common) dial(ctx context.Context, i int, addr string) (net.Conn, error) {
	c, err := o.spread.dial(ctx, i, addr)
	if err != nil || !o.tls {
		return c, err
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}
