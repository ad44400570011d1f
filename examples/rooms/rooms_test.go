package rooms_test

import (
	"context"
	"testing"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/backend/backendtest"
	"github.com/switchyard-gw/switchyard/examples/rooms"
	"github.com/switchyard-gw/switchyard/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRooms(t *testing.T) {
	key := []byte("0123456789abcdef")
	srv, err := backend.New(backend.Config{Shard: "chat", Link: "127.0.0.1:0", ClusterKeys: [][]byte{key}, Handler: rooms.Handler{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	g1 := backendtest.Dial(t, srv.Addr(), key, "gw-1")
	g2 := backendtest.Dial(t, srv.Addr(), key, "gw-2")
	alice, bob := backendtest.SID(1), backendtest.SID(2)
	g1.Open(alice, "alice", 0, backendtest.OpenOpts{})
	g1.Expect(protocol.LinkOpened)
	g2.Open(bob, "bob", 0, backendtest.OpenOpts{})
	g2.Expect(protocol.LinkOpened)

	g2.Up(bob, 1, 1, true, "join lobby")
	if e := g2.Expect(protocol.LinkSubscribe); e.Session != bob || backendtest.DecodeExt(t, e.Ext).Topic != "lobby" {
		t.Fatalf("subscribe %+v", e)
	}
	if d := g2.Expect(protocol.LinkDown); string(d.Payload) != "joined lobby" {
		t.Fatalf("reply %q", d.Payload)
	}
	g2.Expect(protocol.LinkUpAck)

	g1.Up(alice, 1, 1, true, "say lobby hello")
	for _, g := range []*backendtest.Gateway{g1, g2} { // every gateway, once
		e := g.Expect(protocol.LinkPublish)
		if backendtest.DecodeExt(t, e.Ext).Topic != "lobby" || string(e.Payload) != "alice: hello" {
			t.Fatalf("publish %q", e.Payload)
		}
	}
	g1.Expect(protocol.LinkUpAck)
	g1.Up(alice, 1, 0, false, "dance")
	if d := g1.Expect(protocol.LinkDown); string(d.Payload) != "error: unknown command" {
		t.Fatalf("reply %q", d.Payload)
	}
}
