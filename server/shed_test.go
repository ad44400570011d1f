package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// A gateway behind on its handshakes refuses new connections with 503 and
// a retry hint, and takes them again once the handshakes it accepted are
// done. The lag is set by hand: making a real one would need a box slow
// on cue; tools/scale measures the real thing (docs/scale.md).
func TestShedsWhenBehind(t *testing.T) {
	g := startGateway(t, Config{})
	// Connections in their handshake: the start of a HELLO, no more.
	var held []*dev
	for range shedMinHandshaking + 1 {
		d := dial(t, g)
		d.write(rawHeader(100, protocol.TypeHello, 0, 0))
		held = append(held, d)
	}
	waitFor(t, "connections in their handshake", func() bool {
		return g.metrics.connStates[stHandshake].Load() == shedMinHandshaking+1
	})

	// Caught up: a new device is served, whatever the handshakes in flight.
	d := dial(t, g)
	d.hello(protocol.Hello{ID: "before"})

	// Behind by 3 s: the next device is refused at once, with a hint of
	// twice the lag.
	g.acceptLag.Store(int64(3 * time.Second))
	over := dial(t, g)
	over.send(protocol.TypeHello, 0, 0, nil)
	f := over.read()
	var e protocol.ErrorMsg
	if f.Type != protocol.TypeError || protocol.Unmarshal(f.Payload, &e) != nil || e.Code != protocol.CodeUnavailable {
		t.Fatalf("a device while behind got %v %s, want ERROR 503", f.Type, errText(f))
	}
	if e.RetryMS != 6000 {
		t.Fatalf("retry_ms %d, want 6000 (twice the 3 s lag)", e.RetryMS)
	}
	over.expectClosed()
	if n := metric(g, `switchyard_connections_rejected_total{reason="overload"}`); n != 1 {
		t.Fatalf("overload rejections %v, want 1", n)
	}
	if lag := metric(g, "switchyard_accept_lag_seconds"); lag != 3 {
		t.Fatalf("switchyard_accept_lag_seconds %v, want 3", lag)
	}

	// The handshakes it was behind on end: new devices are let in again,
	// and their lag brings the average down.
	for _, h := range held {
		h.nc.Close()
	}
	waitFor(t, "the held handshakes gone", func() bool {
		return g.metrics.connStates[stHandshake].Load() == 0
	})
	for i := range 3 {
		d := dial(t, g)
		d.hello(protocol.Hello{ID: fmt.Sprint("after", i)})
	}
	if lag := g.acceptLag.Load(); lag >= int64(3*time.Second) {
		t.Fatalf("accept lag still %v after three prompt handshakes", time.Duration(lag))
	}

	// shed_lag < 0 never sheds, however far behind.
	cfg := g.running
	cfg.ShedLag = -1
	if _, err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	g.acceptLag.Store(int64(time.Hour))
	for range shedMinHandshaking + 1 {
		d := dial(t, g)
		d.write(rawHeader(100, protocol.TypeHello, 0, 0))
	}
	waitFor(t, "connections in their handshake", func() bool {
		return g.metrics.connStates[stHandshake].Load() == shedMinHandshaking+1
	})
	dial(t, g).hello(protocol.Hello{ID: "never-shed"})
}
