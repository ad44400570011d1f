package conformance

import (
	"bytes"
	"testing"
)

// TestResume checks resume tokens (Handshake steps 2 and 3) and delivery
// across a reconnect ("Data and delivery").
func TestResume(t *testing.T) { forEachMode(t, testResume) }

func testResume(t *testing.T, m mode) {
	g := startGateway(t, m, gwOptions{})
	t.Run("redelivers_unacked_downstream_and_continues_numbering", func(t *testing.T) { testResumeRedelivers(t, g) })
	t.Run("redelivery_starts_after_hello_last", func(t *testing.T) { testResumeHelloLast(t, g) })
	t.Run("resent_frames_up_to_welcome_last_dropped", func(t *testing.T) { testResumeDuplicates(t, g) })
	t.Run("client_resends_after_welcome_last", func(t *testing.T) { testResumeResend(t, g) })
	t.Run("token_with_another_device_id_does_not_resume", func(t *testing.T) { testResumeOtherID(t, g) })
	for name, tok := range map[string][]byte{
		"random_32_bytes": bytes.Repeat([]byte{0xA5, 0x5A, 0x00, 0xFF}, 8),
		"empty":           {},
		"one_byte":        {0x01},
		"1000_bytes":      bytes.Repeat([]byte("garbage!"), 125),
	} {
		t.Run("garbage_token_"+name+"_new_session", func(t *testing.T) {
			f := helloFields(newID("garbage"))
			f["resume"] = tok
			f["last"] = 7
			d := dial(t, g)
			w := d.handshake(f)
			if w.resumed || w.last != 0 {
				t.Fatalf("garbage resume token: WELCOME resumed=%v last=%d, want a new session (resumed false, last 0)", w.resumed, w.last)
			}
			d.echo([]byte("new session works"))
		})
	}
}

// resumeHello is a HELLO that resumes with token, having received last.
func resumeHello(id string, token []byte, last uint32) map[string]any {
	f := helloFields(id)
	f["resume"] = token
	f["last"] = last
	return f
}

// sendReliableRange sends reliable DATA seq from..to with payloads want[seq-1].
func sendReliableRange(d *dev, from, to uint32, want []string) {
	d.t.Helper()
	var buf []byte
	for seq := from; seq <= to; seq++ {
		buf = appendFrame(buf, typeData, flagAckRequested, seq, []byte(want[seq-1]))
	}
	d.upSent = max(d.upSent, to)
	d.write(buf)
}

// testResumeRedelivers: send 1..5, ACK downstream only up to 3, drop the
// connection, resume with last 3: the gateway redelivers 4 and 5, reports
// upstream last 5, and numbering continues at 6 in both directions.
func testResumeRedelivers(t *testing.T, g *gateway) {
	id := newID("resume")
	want := numbered("resume", 6)
	a := dial(t, g)
	first := a.handshake(helloFields(id))
	a.ackCap = 3
	sendReliableRange(a, 1, 5, want)
	requireReliable(t, a.collect(5, 5), 1, want[:5])
	a.conn.Close()

	b := dial(t, g)
	w := b.handshake(resumeHello(id, first.resume, 3))
	if !w.resumed || w.session != first.session || w.last != 5 {
		t.Fatalf("resume: WELCOME resumed=%v session=%q last=%d, want resumed=true session=%q last=5",
			w.resumed, w.session, w.last, first.session)
	}
	b.upSent, b.down, b.downAcked = 5, 3, 3
	requireReliable(t, b.collect(2, 0), 4, want[3:5])
	b.sendReliable(6, []byte(want[5]))
	requireReliable(t, b.collect(1, 6), 6, want[5:6])
}

// testResumeHelloLast: frames the client received but did not ACK are not
// redelivered when HELLO last says it has them.
func testResumeHelloLast(t *testing.T, g *gateway) {
	id := newID("resume")
	want := numbered("last", 4)
	a := dial(t, g)
	first := a.handshake(helloFields(id))
	a.ackCap = 0 // never ACK downstream
	sendReliableRange(a, 1, 3, want)
	requireReliable(t, a.collect(3, 3), 1, want[:3])
	a.conn.Close()

	b := dial(t, g)
	w := b.handshake(resumeHello(id, first.resume, 3))
	if !w.resumed || w.session != first.session || w.last != 3 {
		t.Fatalf("resume: WELCOME resumed=%v session=%q last=%d, want resumed=true session=%q last=3",
			w.resumed, w.session, w.last, first.session)
	}
	b.upSent, b.down, b.downAcked = 3, 3, 3
	b.sendReliable(4, []byte(want[3]))
	requireReliable(t, b.collect(1, 4), 4, want[3:4]) // seq 1..3 must not come back
}

// testResumeDuplicates: after a resume the client resends 1 and 2 although
// WELCOME last says 2 was accepted; the gateway drops them by seq.
func testResumeDuplicates(t *testing.T, g *gateway) {
	id := newID("dups")
	a := dial(t, g)
	first := a.handshake(helloFields(id))
	sendReliableRange(a, 1, 2, []string{"one", "two"})
	requireReliable(t, a.collect(2, 2), 1, []string{"one", "two"})
	a.conn.Close()

	b := dial(t, g)
	w := b.handshake(resumeHello(id, first.resume, 2))
	if !w.resumed || w.last != 2 {
		t.Fatalf("resume: WELCOME resumed=%v last=%d, want resumed=true last=2", w.resumed, w.last)
	}
	b.down, b.downAcked = 2, 2
	sendReliableRange(b, 1, 3, []string{"dup-one", "dup-two", "three"})
	requireReliable(t, b.collect(1, 3), 3, []string{"three"})
	b.echo([]byte("marker")) // no late duplicate echo before the marker
}

// testResumeResend: the client drops the connection right after sending
// 1..3, resumes, resends from WELCOME last + 1, and in the end has every echo
// exactly once, in order.
func testResumeResend(t *testing.T, g *gateway) {
	id := newID("resend")
	want := numbered("resend", 3)
	a := dial(t, g)
	first := a.handshake(helloFields(id))
	sendReliableRange(a, 1, 3, want)
	a.conn.Close()

	b := dial(t, g)
	w := b.handshake(resumeHello(id, first.resume, 0))
	if !w.resumed || w.session != first.session || w.last > 3 {
		t.Fatalf("resume: WELCOME resumed=%v session=%q last=%d, want resumed=true session=%q last<=3",
			w.resumed, w.session, w.last, first.session)
	}
	t.Logf("WELCOME last=%d after an abrupt close; resending %d..3", w.last, w.last+1)
	b.upSent = uint32(w.last)
	wantAck := uint32(0) // WELCOME last already covers everything
	if w.last < 3 {
		sendReliableRange(b, uint32(w.last)+1, 3, want)
		wantAck = 3
	}
	requireReliable(t, b.collect(3, wantAck), 1, want)
	b.echo([]byte("marker")) // nothing duplicated before the marker
}

// testResumeOtherID presents device X's resume token with device Y's id.
func testResumeOtherID(t *testing.T, g *gateway) {
	x := connect(t, g)
	x.conn.Close()
	y := dial(t, g)
	f := y.hello(resumeHello(newID("thief"), x.w.resume, 0))
	if f.typ == typeError {
		e, err := parseError(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("gateway refused the foreign token with ERROR %d %q", e.code, e.message)
		y.expectClosed()
		return
	}
	w, err := parseWelcome(f)
	if err != nil {
		t.Fatal(err)
	}
	if w.resumed || w.session == x.w.session || w.last != 0 {
		t.Fatalf("device %q resumed device %q's session: WELCOME resumed=%v session=%q last=%d (X's session %q)",
			y.id, x.id, w.resumed, w.session, w.last, x.w.session)
	}
}
