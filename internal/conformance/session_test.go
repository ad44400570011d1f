package conformance

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// TestTakeover checks "Session takeover": a newer HELLO for a connected
// device id wins; the old connection gets ERROR 409 and is closed.
func TestTakeover(t *testing.T) { forEachMode(t, testTakeover) }

func testTakeover(t *testing.T, m mode) {
	g := startGateway(t, m, gwOptions{})
	t.Run("same_id_old_connection_409", func(t *testing.T) {
		bystander := connect(t, g)
		old := connect(t, g)
		newer := dial(t, g)
		newer.handshake(helloFields(old.id))
		old.expectError(codeTakenOver)
		newer.echo([]byte("the newer connection works"))
		bystander.echo([]byte("other devices are untouched"))
	})
	t.Run("resume_while_connected_409", func(t *testing.T) {
		old := connect(t, g)
		old.sendReliable(1, []byte("one"))
		old.collect(1, 1)
		newer := dial(t, g)
		w := newer.handshake(resumeHello(old.id, old.w.resume, 1))
		if !w.resumed || w.session != old.w.session || w.last != 1 {
			t.Fatalf("WELCOME resumed=%v session=%q last=%d, want resumed=true session=%q last=1",
				w.resumed, w.session, w.last, old.w.session)
		}
		old.expectError(codeTakenOver)
		newer.upSent, newer.down, newer.downAcked = 1, 1, 1
		newer.sendReliable(2, []byte("two"))
		requireReliable(t, newer.collect(1, 2), 2, []string{"two"})
	})
}

// TestConnectionBurst opens 200 connections at once from one address: all
// must get WELCOME (Defaults: the rate limit lets this pass untouched).
func TestConnectionBurst(t *testing.T) { forEachMode(t, testConnectionBurst) }

func testConnectionBurst(t *testing.T, m mode) {
	const n = 200
	g := startGateway(t, m, gwOptions{})
	start := make(chan struct{})
	errs := make(chan error, n)
	conns := make(chan net.Conn, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := burstHello(g.addr, newID(fmt.Sprintf("burst%03d", i)))
			if c != nil {
				conns <- c
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	close(conns)
	for c := range conns {
		c.Close()
	}
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("connection: %v", err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d simultaneous connections did not get WELCOME", failed, n)
	}
	connect(t, g).echo([]byte("after the burst"))
}

// burstHello dials and handshakes without touching testing.T, so that it
// can run on any goroutine.
func burstHello(addr, id string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write(encodeFrame(typeHello, 0, 0, pack(helloFields(id)))); err != nil {
		return c, fmt.Errorf("%s: write HELLO: %w", id, err)
	}
	f, err := readFrame(c)
	if err != nil {
		return c, fmt.Errorf("%s: read WELCOME: %w", id, err)
	}
	if _, err := parseWelcome(f); err != nil {
		return c, fmt.Errorf("%s: %w", id, err)
	}
	return c, nil
}
