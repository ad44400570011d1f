package conformance

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestData checks "Data and delivery" against the echo backend: the
// embedded one, or in cluster mode the echo shards.
func TestData(t *testing.T) { forEachMode(t, testData) }

func testData(t *testing.T, m mode) {
	g := startGateway(t, m, gwOptions{})
	t.Run("best_effort_echo", func(t *testing.T) {
		connect(t, g).echo([]byte("hello, switchyard"))
	})
	t.Run("best_effort_all_byte_values", func(t *testing.T) {
		p := make([]byte, 256)
		for i := range p {
			p[i] = byte(i)
		}
		connect(t, g).echo(p)
	})
	t.Run("best_effort_empty_payload", func(t *testing.T) {
		connect(t, g).echo(nil)
	})
	t.Run("reliable_1_to_10_acked_and_echoed_in_order", func(t *testing.T) {
		d := connect(t, g)
		want := numbered("r", 10)
		for i, p := range want {
			d.sendReliable(uint32(i+1), []byte(p))
		}
		got := d.collect(10, 10)
		requireReliable(t, got, 1, want)
	})
	t.Run("mixed_best_effort_keeps_order_and_numbering", func(t *testing.T) { testMixed(t, g) })
	t.Run("duplicate_reliable_dropped", func(t *testing.T) { testDuplicate(t, g) })
	t.Run("frames_split_byte_by_byte", func(t *testing.T) { testTrickle(t, g) })
	t.Run("burst_1000_reliable_in_one_write", func(t *testing.T) { testBurst(t, g, true, 1000, 0) })
	t.Run("burst_1000_best_effort_in_one_write", func(t *testing.T) { testBurst(t, g, false, 1000, 0) })
	// PROTOCOL.md gives the frames of "1000 written at once" no size:
	// larger ones must pass too, and so must a few of the largest.
	t.Run("burst_1000_reliable_of_1KiB_in_one_write", func(t *testing.T) { testBurst(t, g, true, 1000, 1024) })
	t.Run("burst_8_of_max_frame_in_one_write", func(t *testing.T) { testBurst(t, g, false, 8, defaultMaxFrame) })
}

// numbered returns n distinct payloads.
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%04d", prefix, i+1)
	}
	return out
}

// requireReliable checks frames are reliable DATA numbered from first with
// the wanted payloads. (collect already checked the numbering is gapless.)
func requireReliable(t *testing.T, got []frame, first uint32, want []string) {
	t.Helper()
	for i, f := range got {
		if f.flags != flagAckRequested || f.seq != first+uint32(i) {
			t.Fatalf("echo %d: %v, want reliable DATA (flags 0x01) seq %d", i, f, first+uint32(i))
		}
	}
	if p := payloads(got); !slices.Equal(p, want) {
		t.Fatalf("echoed payloads %q, want %q (same payloads, same order)", p, want)
	}
}

// testMixed interleaves best-effort DATA between reliable DATA: order holds
// across both and best-effort frames do not consume reliable seq numbers.
func testMixed(t *testing.T, g *gateway) {
	d := connect(t, g)
	var buf []byte
	buf = appendFrame(buf, typeData, flagAckRequested, 1, []byte("r1"))
	buf = appendFrame(buf, typeData, 0, 0, []byte("b1"))
	buf = appendFrame(buf, typeData, flagAckRequested, 2, []byte("r2"))
	buf = appendFrame(buf, typeData, 0, 0, []byte("b2"))
	buf = appendFrame(buf, typeData, flagAckRequested, 3, []byte("r3"))
	d.upSent = 3
	d.write(buf)
	got := d.collect(5, 3)
	want := []struct {
		flags byte
		seq   uint32
		p     string
	}{{1, 1, "r1"}, {0, 0, "b1"}, {1, 2, "r2"}, {0, 0, "b2"}, {1, 3, "r3"}}
	for i, w := range want {
		if f := got[i]; f.flags != w.flags || f.seq != w.seq || string(f.payload) != w.p {
			t.Fatalf("echo %d: %v, want DATA flags=%#02x seq=%d payload %q", i, f, w.flags, w.seq, w.p)
		}
	}
}

// testDuplicate resends reliable seq 2 with another payload: "receivers drop
// duplicates by seq", so it is neither echoed nor breaks the numbering.
func testDuplicate(t *testing.T, g *gateway) {
	d := connect(t, g)
	var buf []byte
	buf = appendFrame(buf, typeData, flagAckRequested, 1, []byte("one"))
	buf = appendFrame(buf, typeData, flagAckRequested, 2, []byte("two"))
	buf = appendFrame(buf, typeData, flagAckRequested, 2, []byte("two-duplicate"))
	buf = appendFrame(buf, typeData, flagAckRequested, 3, []byte("three"))
	buf = appendFrame(buf, typeData, 0, 0, []byte("marker"))
	d.upSent = 3
	d.write(buf)
	got := d.collect(4, 3)
	requireReliable(t, got[:3], 1, []string{"one", "two", "three"})
	if m := got[3]; m.flags != 0 || string(m.payload) != "marker" {
		t.Fatalf("after the duplicate: %v, want only the best-effort marker", m)
	}
}

// testBurst writes n DATA frames in one write, each payload padded to size
// bytes (0: as numbered makes them): all are echoed in order, and neither
// the default rate limit (429) nor the bound on unread input (413) may
// answer.
func testBurst(t *testing.T, g *gateway, reliable bool, n, size int) {
	d := connect(t, g)
	want := numbered("burst", n)
	for i, p := range want {
		if pad := size - len(p); pad > 0 {
			want[i] = p + strings.Repeat(".", pad)
		}
	}
	var buf []byte
	for i, p := range want {
		if reliable {
			buf = appendFrame(buf, typeData, flagAckRequested, uint32(i+1), []byte(p))
		} else {
			buf = appendFrame(buf, typeData, 0, 0, []byte(p))
		}
	}
	if reliable {
		d.upSent = uint32(n)
	}
	errc := make(chan error, 1)
	go func() { errc <- d.tryWrite(buf) }()
	wantAck := uint32(0)
	if reliable {
		wantAck = uint32(n)
	}
	got := d.collect(n, wantAck)
	if err := <-errc; err != nil {
		t.Fatalf("write the burst: %v", err)
	}
	if p := payloads(got); !slices.Equal(p, want) {
		i := 0
		for i < len(p) && p[i] == want[i] {
			i++
		}
		t.Fatalf("burst echoed out of order: first difference at %d: got %.40q, want %.40q", i, p[i], want[i])
	}
	d.echo([]byte("after the burst"))
}

// testTrickle sends HELLO and a reliable DATA one byte per write: the
// gateway must reassemble frames from a stream however it is cut.
func testTrickle(t *testing.T, g *gateway) {
	d := dial(t, g)
	trickle := func(b []byte) {
		for i := range b {
			d.write(b[i : i+1])
			time.Sleep(time.Millisecond) // let each byte leave as its own segment
		}
	}
	id := newID("split")
	trickle(encodeFrame(typeHello, 0, 0, pack(helloFields(id))))
	d.id = id
	if _, err := parseWelcome(d.read()); err != nil {
		t.Fatal(err)
	}
	d.upSent = 1
	trickle(encodeFrame(typeData, flagAckRequested, 1, []byte("split payload")))
	requireReliable(t, d.collect(1, 1), 1, []string{"split payload"})
}

// TestMaxPayload checks that a payload of exactly max_frame is accepted and
// one byte more is 413, with the default and with --max-frame.
func TestMaxPayload(t *testing.T) { forEachMode(t, testMaxPayload) }

func testMaxPayload(t *testing.T, m mode) {
	for _, max := range []int{defaultMaxFrame, flagMaxFrame} {
		t.Run(fmt.Sprintf("max_frame_%d", max), func(t *testing.T) {
			opts := gwOptions{}
			if max != defaultMaxFrame {
				opts.maxFrame = max
			}
			g := startGateway(t, m, opts)
			p := bytes.Repeat([]byte("0123456789abcdef"), max/16+1)[:max]
			t.Run("exact_best_effort_echoed", func(t *testing.T) {
				d := connect(t, g)
				if d.w.maxFrame != int64(max) {
					t.Fatalf("WELCOME max_frame = %d, want %d", d.w.maxFrame, max)
				}
				d.echo(p)
			})
			t.Run("exact_reliable_echoed", func(t *testing.T) {
				d := connect(t, g)
				d.sendReliable(1, p)
				got := d.collect(1, 1)
				if !bytes.Equal(got[0].payload, p) || got[0].seq != 1 || got[0].flags != flagAckRequested {
					t.Fatalf("%d-byte reliable DATA echoed as %v", max, got[0])
				}
			})
			t.Run("plus_1_header_only_413", func(t *testing.T) {
				d := connect(t, g)
				d.write(header(uint32(lengthOverhead+max+1), typeData, 0, 0))
				d.expectErrorWithin(codeTooLarge, promptTimeout)
			})
		})
	}
}
