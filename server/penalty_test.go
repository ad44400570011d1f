package server

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// TestPenaltyBox: a source is penalized at its third strike, for the
// penalty after its last; strikes further apart than penaltyForget
// penalties are forgotten; IPv6 sources are their /64; the table is
// bounded.
func TestPenaltyBox(t *testing.T) {
	const pen = 100 // ticks
	var p penaltyBox
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	for i := range penaltyStrikes - 1 {
		p.strike(a, int64(i), pen)
		if l := p.left(a, int64(i), pen); l != 0 {
			t.Fatalf("penalized after %d strikes (left %d)", i+1, l)
		}
	}
	p.strike(a, 10, pen)
	if l := p.left(a, 10, pen); l != pen {
		t.Fatalf("left %d at the third strike, want %d", l, pen)
	}
	if l := p.left(a, 60, pen); l != 50 {
		t.Fatalf("left %d halfway, want 50", l)
	}
	if l := p.left(b, 60, pen); l != 0 {
		t.Fatalf("another address penalized: left %d", l)
	}
	if l := p.left(a, 10+pen, pen); l != 0 {
		t.Fatalf("still penalized after the penalty: left %d", l)
	}
	// Flooding again soon after: penalized again at the first strike.
	p.strike(a, 10+2*pen, pen)
	if l := p.left(a, 10+2*pen, pen); l != pen {
		t.Fatalf("a repeat offender was not penalized at once: left %d", l)
	}
	// Long after: forgotten, three strikes needed again.
	later := int64(10 + 2*pen + penaltyForget*pen + 1)
	p.strike(a, later, pen)
	if l := p.left(a, later, pen); l != 0 {
		t.Fatalf("old strikes still counted: left %d", l)
	}
	// Penalty off: nothing counts.
	if l := p.left(a, later, 0); l != 0 {
		t.Fatalf("penalized with the penalty off: left %d", l)
	}

	// IPv6: the /64 is one source, another /64 is not.
	var q penaltyBox
	for i := range penaltyStrikes {
		q.strike(netip.MustParseAddr("2001:db8:1:2::"+string(rune('a'+i))), 0, pen)
	}
	if q.left(netip.MustParseAddr("2001:db8:1:2:ffff::1"), 1, pen) == 0 {
		t.Fatal("an address of the flooding /64 is not penalized")
	}
	if q.left(netip.MustParseAddr("2001:db8:1:3::1"), 1, pen) != 0 {
		t.Fatal("another /64 is penalized")
	}
	// An IPv4-mapped IPv6 address is the IPv4 address.
	if l := p.left(netip.MustParseAddr("::ffff:192.0.2.1"), later, pen); l != 0 {
		t.Fatalf("mapped address: left %d, want 0 like the plain one", l)
	}

	// Bounded: past penaltySources live entries a new source is refused.
	var r penaltyBox
	for i := range penaltySources {
		if !r.strike(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 0, pen) {
			t.Fatalf("source %d not tracked in a table that is not full", i)
		}
	}
	if r.strike(netip.MustParseAddr("192.0.2.9"), 1, pen) {
		t.Fatal("a full table took one more source")
	}
	// Once the old strikes are forgotten, the sweep makes room.
	if !r.strike(netip.MustParseAddr("192.0.2.9"), penaltyForget*pen+1, pen) {
		t.Fatal("a table of forgotten strikes did not make room")
	}
	r.sweep(penaltyForget*pen+1, pen)
	if n := r.n.Load(); n != 1 {
		t.Fatalf("%d sources after the sweep, want 1", n)
	}
}

// floodFrom connects from src, writes header (a PROXY header or nil),
// says HELLO and writes frames far over the rate until the gateway closes
// the connection.
func floodFrom(t *testing.T, g *Gateway, src string, header []byte, id string) {
	t.Helper()
	d := dialFrom(t, g, src)
	if header != nil {
		d.write(header)
	}
	d.hello(protocol.Hello{ID: id})
	chunk := floodChunk(64 << 10)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if _, err := d.nc.Write(chunk); err != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(poll.Patience)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the flooding device was not closed")
		}
		f, err := d.tryRead(poll.Patience)
		if err != nil {
			break // closed
		}
		if f.Type == protocol.TypeError && strings.Contains(errText(f), "closing") {
			break
		}
	}
	d.nc.Close()
	wg.Wait()
}

// strikeOut floods from src (after header, when not nil) until the
// gateway closed penaltyStrikes connections for it.
func strikeOut(t *testing.T, g *Gateway, src string, header []byte) {
	t.Helper()
	for i := range penaltyStrikes {
		floodFrom(t, g, src, header, "flood-"+string(rune('a'+i)))
	}
	waitFor(t, "three flood closes counted", func() bool {
		return metric(g, `switchyard_disconnects_total{reason="rate_flood"}`)+
			metric(g, `switchyard_disconnects_total{reason="unread_limit"}`) == penaltyStrikes
	})
}

// TestFloodPenalty: after three flood closes from one address, a new
// connection from it gets ERROR 503 with the penalty as retry_ms, is
// closed and counted, while devices from other addresses connect as
// before; with the penalty off nobody is refused.
func TestFloodPenalty(t *testing.T) {
	for _, off := range []bool{false, true} {
		name := map[bool]string{false: "on", true: "off"}[off]
		t.Run(name, func(t *testing.T) {
			cfg := Config{Rate: 100, RateBurst: 100, RateExcessClose: time.Hour, AbusePenalty: time.Hour}
			if off {
				cfg.AbusePenalty = -1
			}
			g := startGateway(t, cfg)
			strikeOut(t, g, "127.0.0.2", nil)
			d := dialFrom(t, g, "127.0.0.2")
			if off {
				d.hello(protocol.Hello{ID: "again"})
				if n := metric(g, `switchyard_connections_rejected_total{reason="penalty"}`); n != 0 {
					t.Fatalf("penalty off, %v refused", n)
				}
				return
			}
			f := d.read()
			var e protocol.ErrorMsg
			if f.Type != protocol.TypeError || protocol.Unmarshal(f.Payload, &e) != nil ||
				e.Code != protocol.CodeUnavailable || e.RetryMS < int(time.Hour/time.Millisecond)-60_000 {
				t.Fatalf("penalized source got %v %+v, want ERROR 503 with retry_ms about an hour", f.Type, e)
			}
			d.expectClosed()
			if n := metric(g, `switchyard_connections_rejected_total{reason="penalty"}`); n != 1 {
				t.Fatalf("rejected{penalty} = %v, want 1", n)
			}
			if n := metric(g, "switchyard_penalized_sources"); n != 1 {
				t.Fatalf("penalized_sources = %v, want 1", n)
			}
			other := dialFrom(t, g, "127.0.0.3")
			other.hello(protocol.Hello{ID: "quiet"})
		})
	}
}

// TestFloodPenaltyBehindProxy: behind a load balancer the penalty is the
// device's address from its PROXY header, never the balancer's: after
// three floods from one client address, that address is refused once its
// header is read, and another client through the same balancer is served.
func TestFloodPenaltyBehindProxy(t *testing.T) {
	g := startGateway(t, Config{Rate: 100, RateBurst: 100, RateExcessClose: time.Hour,
		AbusePenalty: time.Hour, ProxyProtocolNetworks: loopbackOnly})
	bad := proxyV2("198.51.100.9:40003", "127.0.0.1:7400", -1)
	strikeOut(t, g, "127.0.0.1", bad)
	good := dialFrom(t, g, "127.0.0.1")
	good.write(proxyV2("198.51.100.10:40003", "127.0.0.1:7400", -1))
	good.hello(protocol.Hello{ID: "quiet"})
	d := dialFrom(t, g, "127.0.0.1")
	d.write(bad)
	d.expectError(protocol.CodeUnavailable, true)
	if n := metric(g, `switchyard_connections_rejected_total{reason="penalty"}`); n != 1 {
		t.Fatalf("rejected{penalty} = %v, want 1", n)
	}
}
