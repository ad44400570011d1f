//go:build !race

package server

import (
	"testing"
	"time"
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
			batchLoop(b, c, peer, 64)
		})
	}
}
