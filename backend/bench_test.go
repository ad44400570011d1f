package backend_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/backend/backendtest"
	"github.com/switchyard-gw/switchyard/protocol"
)

// nop accepts every message.
type nop struct{}

func (nop) OnOpen(*backend.Session, backend.OpenReason, []byte) error { return nil }
func (nop) OnMessage(*backend.Session, []byte, bool) error            { return nil }
func (nop) OnClose(*backend.Session, string)                          {}

// BenchmarkUpstream measures the shard's work per reliable upstream frame
// arriving in bursts of 16 on one session: decode, fencing, mailbox,
// handler call, cumulative UpAck.
func BenchmarkUpstream(b *testing.B) {
	srv, err := backend.New(backend.Config{Shard: "bench", Link: "127.0.0.1:0", ClusterKeys: [][]byte{key}, Handler: nop{}})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	})
	g := backendtest.Dial(b, srv.Addr(), key, "gw")
	sid := backendtest.SID(1)
	g.Open(sid, "dev", 0, backendtest.OpenOpts{})
	opened := g.Expect(protocol.LinkOpened)
	payload := make([]byte, 64)
	var burst []byte
	seq := uint32(0)
	b.ReportAllocs()
	b.SetBytes(16 * 64)
	for b.Loop() {
		burst = burst[:0]
		for range 16 {
			seq++
			burst = protocol.AppendLinkFrame(burst, &protocol.Envelope{Kind: protocol.LinkUp, Session: sid,
				Epoch: opened.Epoch, Seq: seq, Flags: protocol.FlagAckRequested, Payload: payload})
		}
		g.SendRaw(burst)
		for {
			e := g.Expect(protocol.LinkUpAck)
			if e.Seq == seq {
				break
			}
		}
	}
}
