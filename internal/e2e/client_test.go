package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/server"
)

func gateway(t *testing.T, cfg server.Config) *server.Gateway {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.AdminListen == "" {
		cfg.AdminListen = "-"
	}
	g, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
		defer cancel()
		_ = g.Close(ctx)
	})
	return g
}

func dial(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRateLimitedReliableRecovers: frames the gateway drops with 429 are
// resent by the client (go-back-N) on the same connection, so every reliable
// frame is eventually echoed once, in order, with no reconnect.
func TestRateLimitedReliableRecovers(t *testing.T) {
	g := gateway(t, server.Config{Rate: 50, RateBurst: 20, RateExcessClose: time.Minute})
	c := dial(t, client.Config{Addr: g.Addr().String(), ID: "bursty"})
	const n = 100
	ctx, cancel := context.WithTimeout(context.Background(), 2*poll.Patience)
	defer cancel()
	for i := range n {
		if err := c.Send(ctx, []byte(fmt.Sprint(i)), true); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		m, err := c.Recv(ctx)
		if err != nil {
			t.Fatalf("recv %d: %v (stats %+v)", i, err, c.Stats())
		}
		if string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("echo %d = %q", i, m.Payload)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.RateLimited == 0 || st.Resends == 0 || st.Reconnects != 0 {
		t.Fatalf("want 429s and resends without reconnects: %+v", st)
	}
}

// TestTakeoverIsFinal: a second client with the same id takes the session
// over; the first one's Recv returns 409 and it does not come back.
func TestTakeoverIsFinal(t *testing.T) {
	g := gateway(t, server.Config{})
	a := dial(t, client.Config{Addr: g.Addr().String(), ID: "twin"})
	b := dial(t, client.Config{Addr: g.Addr().String(), ID: "twin"})
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	if _, err := a.Recv(ctx); !errors.Is(err, client.ErrTakenOver) {
		t.Fatalf("first client: %v, want ErrTakenOver", err)
	}
	if err := b.Send(ctx, []byte("still here"), true); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Recv(ctx); err != nil || string(m.Payload) != "still here" {
		t.Fatalf("second client: %q %v", m.Payload, err)
	}
}

// TestDrainResumesElsewhereAsNewSession: GOAWAY with a redirect moves the
// client to the other gateway. With the embedded echo the session lives on
// the drained gateway, so the client starts a new session there and
// resends what was not acknowledged (docs/guarantees.md).
func TestDrainResumesElsewhere(t *testing.T) {
	b := gateway(t, server.Config{})
	a, err := server.New(server.Config{Listen: "127.0.0.1:0", AdminListen: "-", GoAwayRetry: 100 * time.Millisecond,
		Redirects: []string{b.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := dial(t, client.Config{Addr: a.Addr().String(), ID: "mover"})
	first := c.Session()
	ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, []byte("after"), true); err != nil {
		t.Fatal(err)
	}
	if m, err := c.Recv(ctx); err != nil || string(m.Payload) != "after" {
		t.Fatalf("after drain: %q %v", m.Payload, err)
	}
	if c.Session() == first || c.Stats().Reconnects != 1 {
		t.Fatalf("session %s (was %s), stats %+v", c.Session(), first, c.Stats())
	}
}
