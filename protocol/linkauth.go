package protocol

import (
	"crypto/hmac"
	"crypto/sha256"
)

// Link authentication (docs/links.md): three envelopes, each side proving
// it holds a cluster key by a MAC over the other side's nonce.
//
//	gw → be  LinkHello      ext{node, nonce: gN}
//	be → gw  LinkChallenge  ext{shard, nonce: bN, mac: LinkMAC(key0, LinkMACBackend, gN, shard)}
//	gw → be  LinkAuth       ext{mac: LinkMAC(key0, LinkMACGateway, bN, node)}
//
// The first key signs; any key verifies (rotation).
const (
	LinkMACBackend = "switchyard-link-be" // label of the shard's MAC
	LinkMACGateway = "switchyard-link-gw" // label of the gateway's MAC
	LinkNonceSize  = 16                   // bytes of each nonce
)

// LinkMAC is HMAC-SHA256(key, label | nonce | name).
func LinkMAC(key []byte, label string, nonce []byte, name string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(label))
	m.Write(nonce)
	m.Write([]byte(name))
	return m.Sum(nil)
}

// VerifyLinkMAC reports whether mac was made by LinkMAC with any of keys,
// comparing in constant time.
func VerifyLinkMAC(keys [][]byte, mac []byte, label string, nonce []byte, name string) bool {
	ok := false
	for _, k := range keys {
		ok = hmac.Equal(mac, LinkMAC(k, label, nonce, name)) || ok
	}
	return ok
}
