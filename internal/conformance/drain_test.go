package conformance

import (
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Drain bounds. PROTOCOL.md fixes neither retry_ms nor how long a gateway
// spreads its GOAWAYs, so these are generous.
const (
	goawayTimeout = 20 * time.Second       // SIGTERM to each device's GOAWAY
	exitTimeout   = 30 * time.Second       // SIGTERM to process exit
	closeSlack    = 10 * time.Second       // beyond retry_ms, GOAWAY to close
	earlyClose    = 150 * time.Millisecond // tolerance on "serves for retry_ms"
	minEchoWindow = 500 * time.Millisecond // retry_ms long enough to use the connection
)

// drainLog is what one device saw after SIGTERM.
type drainLog struct {
	goaway   goaway
	goawayAt time.Time
	echoSent bool
	after    []frame // frames after GOAWAY, before the close
	closedAt time.Time
	err      error
}

// TestDrain checks "Draining": on SIGTERM each device gets GOAWAY, is served
// for retry_ms, then closed, and the process exits 0.
func TestDrain(t *testing.T) { forEachMode(t, testDrain) }

func testDrain(t *testing.T, m mode) {
	if testing.Short() {
		t.Skip("waits for a graceful drain")
	}
	g := startGateway(t, m, gwOptions{})
	devs := make([]*dev, 3)
	for i := range devs {
		devs[i] = connect(t, g)
		devs[i].echo([]byte("before drain"))
	}
	logs := make([]drainLog, len(devs))
	var wg sync.WaitGroup
	sigterm := time.Now()
	g.signal(syscall.SIGTERM)
	draining := make(chan struct{})
	var once sync.Once
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			logs[i] = watchDrain(d, func() { once.Do(func() { close(draining) }) })
		}()
	}
	select {
	case <-draining:
		t.Run("new_connection_while_draining_not_welcomed", func(t *testing.T) { checkDrainingRefuses(t, g) })
	case <-time.After(goawayTimeout):
	}
	wg.Wait()
	for i, l := range logs {
		t.Run(fmt.Sprintf("device_%d_goaway_served_then_closed", i), func(t *testing.T) {
			checkDrainLog(t, l, sigterm)
		})
	}
	err, exited := g.waitExit(exitTimeout)
	if !exited {
		t.Fatalf("gateway still running %v after SIGTERM", exitTimeout)
	}
	if err != nil {
		t.Fatalf("gateway exit after SIGTERM: %v, want status 0", err)
	}
	t.Logf("gateway exited 0, %v after SIGTERM", time.Since(sigterm).Round(time.Millisecond))
}

// watchDrain records one device's drain without touching testing.T, so all
// devices are watched at the same time: it waits for GOAWAY, sends a DATA
// while retry_ms runs (when it is long enough) and reads until the close.
func watchDrain(d *dev, onGoaway func()) (l drainLog) {
	f, err := d.next(goawayTimeout)
	if err != nil {
		l.err = fmt.Errorf("no GOAWAY within %v of SIGTERM: %w", goawayTimeout, err)
		return l
	}
	l.goawayAt = time.Now()
	onGoaway()
	if l.goaway, l.err = parseGoaway(f); l.err != nil {
		return l
	}
	retry := time.Duration(l.goaway.retryMS) * time.Millisecond
	if retry >= minEchoWindow {
		if l.err = d.tryWrite(encodeFrame(typeData, 0, 0, []byte("served during retry_ms"))); l.err != nil {
			return l
		}
		l.echoSent = true
	}
	for {
		f, err := d.next(time.Until(l.goawayAt.Add(retry + closeSlack)))
		if isClosed(err) {
			l.closedAt = time.Now()
			return l
		}
		if err != nil {
			l.err = fmt.Errorf("not closed within retry_ms + %v: %w", closeSlack, err)
			return l
		}
		l.after = append(l.after, f)
	}
}

// checkDrainingRefuses opens a connection once the gateway drains: the
// Errors table lists "draining" under 503, so a refused connection, a close,
// or ERROR 503 then close are accepted; WELCOME is not.
func checkDrainingRefuses(t *testing.T, g *gateway) {
	c, err := net.DialTimeout("tcp", g.addr, replyTimeout)
	if err != nil {
		t.Logf("dial refused while draining: %v", err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(replyTimeout))
	if _, err := c.Write(encodeFrame(typeHello, 0, 0, pack(helloFields(newID("late"))))); err != nil {
		t.Logf("HELLO not accepted while draining: %v", err)
		return
	}
	f, err := readFrame(c)
	switch {
	case isClosed(err):
		t.Logf("connection closed without a frame while draining")
		return
	case err != nil:
		t.Fatalf("HELLO while draining: no answer: %v", err)
	case f.typ == typeWelcome:
		t.Fatalf("draining gateway welcomed a new session (%v); PROTOCOL.md Errors: 503 for a draining gateway", f)
	}
	e, err := parseError(f)
	if err != nil || e.code != codeUnavailable {
		t.Fatalf("HELLO while draining: %v (%v), want ERROR 503", f, err)
	}
	if f, err := readFrame(c); !isClosed(err) {
		t.Fatalf("after ERROR 503: %v %v, want close", f, err)
	}
}

// checkDrainLog judges one device's drain.
func checkDrainLog(t *testing.T, l drainLog, sigterm time.Time) {
	if l.err != nil {
		t.Fatal(l.err)
	}
	retry := time.Duration(l.goaway.retryMS) * time.Millisecond
	t.Logf("GOAWAY %v after SIGTERM: reason=%q retry_ms=%d redirect=%q; closed %v after GOAWAY",
		l.goawayAt.Sub(sigterm).Round(time.Millisecond), l.goaway.reason, l.goaway.retryMS,
		l.goaway.redirect, l.closedAt.Sub(l.goawayAt).Round(time.Millisecond))
	after := l.after
	if l.echoSent {
		if len(after) == 0 || after[0].typ != typeData || string(after[0].payload) != "served during retry_ms" {
			t.Fatalf("DATA sent right after GOAWAY (retry_ms=%d) was not echoed; got %v", l.goaway.retryMS, after)
		}
		after = after[1:]
	}
	for i, f := range after {
		switch f.typ {
		case typeGoaway:
			if _, err := parseGoaway(f); err != nil {
				t.Fatal(err)
			}
		case typeError:
			e, err := parseError(f)
			if err != nil || e.code != codeUnavailable || i != len(after)-1 {
				t.Fatalf("after GOAWAY: %v (%v); only ERROR 503, as the last frame, may precede the close", f, err)
			}
		default:
			t.Fatalf("after GOAWAY, unexpected %v", f)
		}
	}
	if el := l.closedAt.Sub(l.goawayAt); el < retry-earlyClose {
		t.Fatalf("closed %v after GOAWAY, before retry_ms = %v ran out", el, retry)
	}
}
