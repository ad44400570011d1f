package echo_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/backend/backendtest"
	"github.com/switchyard-gw/switchyard/examples/echo"
	"github.com/switchyard-gw/switchyard/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEcho(t *testing.T) {
	key := []byte("0123456789abcdef")
	srv, err := backend.New(backend.Config{Shard: "echo", Link: "127.0.0.1:0", ClusterKeys: [][]byte{key}, Handler: echo.Handler{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer srv.Close(context.Background())
	g := backendtest.Dial(t, srv.Addr(), key, "gw")
	sid := backendtest.SID(1)
	g.Open(sid, "dev", 0, backendtest.OpenOpts{})
	g.Expect(protocol.LinkOpened)

	g.Up(sid, 1, 1, true, "reliable")
	if d := g.Expect(protocol.LinkDown); d.Seq != 1 || d.Flags != protocol.FlagAckRequested || string(d.Payload) != "reliable" {
		t.Fatalf("down %+v", d)
	}
	if a := g.Expect(protocol.LinkUpAck); a.Seq != 1 {
		t.Fatalf("ack %d", a.Seq)
	}
	g.Up(sid, 1, 0, false, "quick")
	if d := g.Expect(protocol.LinkDown); d.Seq != 0 || d.Flags != 0 || string(d.Payload) != "quick" {
		t.Fatalf("down %+v", d)
	}
	g.Quiet(20 * time.Millisecond)
}
