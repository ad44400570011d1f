//go:build !race

package server

import (
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// BenchmarkBatchPathTraced is BenchmarkBatchPath/64 while tracing is on:
// "other" traces another device (every frame pays the table's lookup),
// "self" traces this one (every frame is logged, to a discarding logger).
// With tracing off the path is BenchmarkBatchPath's. docs/benchmarks.md
// "Per-device tracing on the frame path".
func BenchmarkBatchPathTraced(b *testing.B) {
	for _, who := range []string{"other", "self"} {
		b.Run(who, func(b *testing.B) {
			c, peer := hotConn(b)
			dev := "someone-else"
			if who == "self" {
				dev = c.sess.device
			}
			if err := c.g.trace.Start(dev, "bench", time.Now().Add(time.Hour)); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 64<<10)
			in := protocol.AppendFrame(nil, protocol.TypeData, 0, 0, make([]byte, 64))
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			bt := batch{start: time.Now()}
			i := 0
			for b.Loop() {
				f, _, _ := protocol.Decode(in, DefaultMaxFrameForTest)
				c.frame(&f, &bt)
				if i++; i%16 == 0 {
					c.flush()
					bt.count(c.g)
					bt = batch{start: time.Now()}
					drain(peer, buf)
				}
			}
		})
	}
}
