package backend

import (
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Link authentication (docs/links.md), backend side:
//
//	gw → be  Hello      ext{node, nonce: gN}
//	be → gw  Challenge  ext{shard, nonce: bN, mac: HMAC(key0, "switchyard-link-be" | gN | shard)}
//	gw → be  Auth       ext{mac: HMAC(key, "switchyard-link-gw" | bN | node)}, any key
//
// "|" is plain concatenation; nonces are 16 random bytes. Nothing but
// these envelopes is read before Auth verified, and a failure closes the
// link without an answer.

const (
	macLabelBackend = protocol.LinkMACBackend
	macLabelGateway = protocol.LinkMACGateway
	nonceSize       = protocol.LinkNonceSize
)

var errAuth = errors.New("backend: link authentication failed")

var linkMAC = protocol.LinkMAC

// authenticate runs the three steps on a new link and returns the
// gateway's node name.
func (l *link) authenticate() (string, error) {
	cfg := &l.srv.cfg
	if err := l.conn.SetDeadline(time.Now().Add(cfg.AuthTimeout)); err != nil {
		return "", err
	}
	hello, err := l.readControl(protocol.LinkHello)
	if err != nil {
		return "", err
	}
	if len(hello.Nonce) != nonceSize || hello.Node == "" {
		return "", fmt.Errorf("%w: hello without node or nonce", errAuth)
	}
	keys := l.srv.clusterKeys()
	bN := make([]byte, nonceSize)
	rand.Read(bN)
	ch, err := protocol.EncodeLinkExt(&protocol.LinkExt{
		Shard: cfg.Shard, Nonce: bN,
		MAC: linkMAC(keys[0], macLabelBackend, hello.Nonce, cfg.Shard),
	})
	if err != nil {
		return "", err
	}
	if _, err := l.conn.Write(protocol.AppendLinkFrame(nil, &protocol.Envelope{Kind: protocol.LinkChallenge, Ext: ch})); err != nil {
		return "", err
	}
	auth, err := l.readControl(protocol.LinkAuth)
	if err != nil {
		return "", err
	}
	if !verifyMAC(keys, auth.MAC, bN, hello.Node) {
		return "", fmt.Errorf("%w: bad mac from %s", errAuth, hello.Node)
	}
	return hello.Node, l.conn.SetDeadline(time.Time{})
}

// readControl reads the next envelope, which must be of kind k.
func (l *link) readControl(k protocol.LinkKind) (protocol.LinkExt, error) {
	e, err := l.rd.NextEnvelope()
	if err != nil {
		return protocol.LinkExt{}, fmt.Errorf("%w: %w", errAuth, err)
	}
	if e.Kind != k {
		return protocol.LinkExt{}, fmt.Errorf("%w: got kind %d, want %d", errAuth, e.Kind, k)
	}
	x, err := protocol.DecodeLinkExt(e.Ext)
	if err != nil {
		return protocol.LinkExt{}, fmt.Errorf("%w: %w", errAuth, err)
	}
	return x, nil
}

// verifyMAC reports whether mac is the gateway's step-3 MAC under any key.
func verifyMAC(keys [][]byte, mac, nonce []byte, node string) bool {
	ok := false
	for _, k := range keys {
		if hmac.Equal(mac, linkMAC(k, macLabelGateway, nonce, node)) {
			ok = true
		}
	}
	return ok
}
