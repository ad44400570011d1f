package counter_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/backend/backendtest"
	"github.com/switchyard-gw/switchyard/examples/counter"
	"github.com/switchyard-gw/switchyard/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var key = []byte("0123456789abcdef")

func shard(t *testing.T, name string) *backend.Server {
	t.Helper()
	srv, err := backend.New(backend.Config{Shard: name, Link: "127.0.0.1:0", ClusterKeys: [][]byte{key}, Handler: counter.Handler{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	return srv
}

// send sends reliable seq and checks the reply.
func send(t *testing.T, g *backendtest.Gateway, sid protocol.SessionID, epoch uint64, seq uint32, want string) {
	t.Helper()
	g.Up(sid, epoch, seq, true, "x")
	if d := g.Expect(protocol.LinkDown); string(d.Payload) != want {
		t.Fatalf("reply %q, want %q", d.Payload, want)
	}
	g.Expect(protocol.LinkUpAck)
}

func TestCounterMigrates(t *testing.T) {
	a, b := shard(t, "a"), shard(t, "b")
	ga := backendtest.Dial(t, a.Addr(), key, "gw")
	sid := backendtest.SID(1)
	ga.Open(sid, "dev", 0, backendtest.OpenOpts{})
	ga.Expect(protocol.LinkOpened)
	for i := uint32(1); i <= 3; i++ {
		send(t, ga, sid, 1, i, fmt.Sprint("a ", i))
	}
	ga.Control(protocol.LinkSnapshot, sid, 1, 0, "")
	x := backendtest.DecodeExt(t, ga.Expect(protocol.LinkState).Ext)
	var st counter.State
	if err := st.UnmarshalBinary(x.State); err != nil || st.Count != 3 || st.LastSeq != 3 {
		t.Fatalf("state %+v %v", st, err)
	}

	gb := backendtest.Dial(t, b.Addr(), key, "gw")
	gb.Open(sid, "dev", 2, backendtest.OpenOpts{Reason: "migrated", State: x.State, LastUp: x.LastUp, DownSeq: x.DownSeq, Outbox: x.Outbox})
	gb.Expect(protocol.LinkOpened)
	send(t, gb, sid, 2, 4, "b 4")
	if got := counter.Of(b.Session("dev")); got.Count != 4 || got.LastSeq != 4 {
		t.Fatalf("after move %+v", got)
	}
}
