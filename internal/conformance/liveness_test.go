package conformance

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// TestPing checks that the gateway answers PING with PONG carrying the same
// payload, flags 0 and seq 0, at any time after the handshake.
func TestPing(t *testing.T) { forEachMode(t, testPing) }

func testPing(t *testing.T, m mode) {
	g := startGateway(t, m, gwOptions{})
	sizes := []int{0, 1, 17, maxPingPayload}
	for _, n := range sizes {
		t.Run(fmt.Sprintf("payload_%d_bytes", n), func(t *testing.T) {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(i * 37) // includes 0x00 and non-printable bytes
			}
			connect(t, g).ping(p)
		})
	}
	t.Run("pings_in_one_write_answered_in_order", func(t *testing.T) {
		d := connect(t, g)
		var buf []byte
		for i := range 5 {
			buf = appendFrame(buf, typePing, 0, 0, []byte{byte('a' + i)})
		}
		d.write(buf)
		for i := range 5 {
			f := d.read()
			want := []byte{byte('a' + i)}
			if f.typ != typePong || f.flags != 0 || f.seq != 0 || !bytes.Equal(f.payload, want) {
				t.Fatalf("answer %d: %v, want PONG flags 0 seq 0 payload %q", i, f, want)
			}
		}
	})
	t.Run("ping_between_data", func(t *testing.T) {
		d := connect(t, g)
		d.echo([]byte("before"))
		d.ping([]byte("mid"))
		d.echo([]byte("after"))
	})
}

// TestIdleTimeout checks Liveness: a connection from which the gateway
// receives nothing for 3 × hb is closed after ERROR 408; traffic keeps it open.
func TestIdleTimeout(t *testing.T) { forEachMode(t, testIdleTimeout) }

func testIdleTimeout(t *testing.T, m mode) {
	g := startGateway(t, m, gwOptions{heartbeat: 1})
	t.Run("welcome_hb_1", func(t *testing.T) {
		if w := connect(t, g).w; w.hb != 1 {
			t.Fatalf("WELCOME hb = %d, want 1 (--heartbeat 1s)", w.hb)
		}
	})
	if testing.Short() {
		t.Skip("waits out the idle timeout")
	}
	t.Run("group", func(t *testing.T) {
		t.Run("silent_connection_closed_408", func(t *testing.T) {
			t.Parallel()
			d := connect(t, g)
			d.answerPings = false // send nothing at all
			start := time.Now()
			d.expectErrorWithin(codeTimeout, 6*time.Second)
			el := time.Since(start)
			if el < 2500*time.Millisecond {
				t.Fatalf("idle close after %v, want about 3 × hb = 3 s (>= 2.5 s)", el)
			}
			t.Logf("ERROR 408 and close %v after WELCOME", el.Round(time.Millisecond))
		})
		t.Run("pings_keep_connection_open", func(t *testing.T) {
			t.Parallel()
			d := connect(t, g)
			keepBusy(t, 4500*time.Millisecond, func(i int) { d.ping([]byte{byte(i)}) })
			d.echo([]byte("alive"))
		})
		t.Run("data_keeps_connection_open", func(t *testing.T) {
			t.Parallel()
			d := connect(t, g)
			keepBusy(t, 4500*time.Millisecond, func(i int) { d.echo([]byte{byte(i)}) })
			d.ping(nil)
		})
	})
}

// keepBusy calls step every 700 ms (less than hb) until d has passed.
func keepBusy(t *testing.T, d time.Duration, step func(i int)) {
	t.Helper()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		step(i)
		time.Sleep(700 * time.Millisecond) // stay silent for less than hb
	}
}
