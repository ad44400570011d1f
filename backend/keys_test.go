package backend_test

import (
	"testing"

	"github.com/switchyard-gw/switchyard/backend/backendtest"
	"github.com/switchyard-gw/switchyard/examples/echo"
	"github.com/switchyard-gw/switchyard/protocol"
)

// TestSetClusterKeys: the three rounds of a rotation while the shard runs
// (the new key added second, made first, the old one dropped): each round
// authenticates gateways that sign with the key now first, a link made
// before stays up, and a dropped key no longer authenticates; a key too
// short is refused and changes nothing. (backendtest gateways hold one
// key, so each dials with the key the shard signs with.)
func TestSetClusterKeys(t *testing.T) {
	srv := start(t, "k", echo.Handler{}, nil)
	before := backendtest.Dial(t, srv.Addr(), key, "gw-before")
	newKey := []byte("fedcba9876543210-new-cluster-key")
	if _, err := backendtest.DialErr(t, srv.Addr(), newKey, "gw-new"); err == nil {
		t.Fatal("a key the shard does not hold authenticated")
	}
	if err := srv.SetClusterKeys([][]byte{key, newKey}, nil); err != nil {
		t.Fatal(err)
	}
	backendtest.Dial(t, srv.Addr(), key, "gw-round-1")
	if err := srv.SetClusterKeys([][]byte{newKey, key}, nil); err != nil {
		t.Fatal(err)
	}
	backendtest.Dial(t, srv.Addr(), newKey, "gw-round-2")
	if err := srv.SetClusterKeys([][]byte{newKey}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := backendtest.DialErr(t, srv.Addr(), key, "gw-removed"); err == nil {
		t.Fatal("a removed key still authenticated")
	}
	if err := srv.SetClusterKeys([][]byte{[]byte("short")}, nil); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
	backendtest.Dial(t, srv.Addr(), newKey, "gw-after")
	// The link made before the changes still serves.
	openSession(t, before, protocol.SessionID{1}, "dev-before", 1, backendtest.OpenOpts{})
}
