package testcluster

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/internal/poll"
)

// traceLines returns the lines of log that carry trace id.
func traceLines(log, id string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "trace_id="+id) {
			out = append(out, l)
		}
	}
	return out
}

// hasLine reports whether one of lines holds every part.
func hasLine(lines []string, parts ...string) bool {
	for _, l := range lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestProcsTrace: fault location from ctl alone, against switchyard
// processes (2 gateways, 1 counter shard), the device on gateway B and
// every ctl call to gateway A unless said: `ctl trace DEV --for 5s`
// reaches B and the shard through gossip, which log the device's frame
// headers with the trace id and stop logging once the trace expired;
// `ctl session DEV` names gateway B and the shard; after a kick,
// `ctl disconnects --device DEV` (on B) and `ctl session DEV` give the
// reason.
func TestProcsTrace(t *testing.T) {
	bin := Binary(t)
	tok := writeToken(t, adminToken)
	p, ctx := convergedProcs(t, Options{Gateways: 2, Shards: 1, App: "counter", GatewayFlags: tokenFlags(t, bin, tok)}, 3*poll.Patience)
	gwA, gwB, sh := p.Gateway(0), p.Gateway(1), p.Shard(0)
	const dev = "traced-device"
	d := Dial(ctx, t, client.Config{Addr: gwB.Addr, ID: dev})
	// Gateway A must see B in gossip to reach it (the ring converging
	// needs only the shard).
	poll.Until(t, poll.Patience, func() error {
		if r := ctl(t, bin, gwA, tok, "members"); strings.Count(r.out, "gateway") < 2 {
			return fmt.Errorf("gateway A's members: %+v", r)
		}
		return nil
	})

	start := time.Now()
	out := mustCtl(t, bin, gwA, tok, []string{"trace", dev, "--for", "5s"}, "device "+dev+" traced until", "on 3 members")
	m := regexp.MustCompile(`trace ([0-9a-f]{16}):`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no trace id in:\n%s", out)
	}
	id := m[1]
	t.Logf("ctl trace:\n%s", out)
	for range 2 {
		if _, err := Exchange(ctx, d, "tick"); err != nil {
			t.Fatal(err)
		}
	}
	if time.Since(start) < 5*time.Second {
		// While the trace lasts, B and the shard log the frames' headers.
		poll.Until(t, poll.Patience, func() error {
			if l := traceLines(gwB.Log(), id); !hasLine(l, "trace: frame in", "device="+dev, "type=DATA", "seq=1 ") {
				return fmt.Errorf("gateway B's log has no traced frame; its trace lines: %q", l)
			}
			if l := traceLines(sh.Log(), id); !hasLine(l, "trace: frame up", "device="+dev, "seq=1 ") {
				return fmt.Errorf("the shard's log has no traced frame; its trace lines: %q", l)
			}
			return nil
		})
	} else {
		t.Logf("the box took %v for the first exchanges: the trace may have expired before them", time.Since(start))
	}
	if l := traceLines(gwA.Log(), id); !hasLine(l, "trace: started", "device="+dev) {
		t.Fatalf("gateway A did not start the trace: %q", l)
	}

	out = mustCtl(t, bin, gwA, tok, []string{"session", dev}, "gateway          "+gwB.Name, "shard            "+sh.Name,
		"attached         true", "epoch ")
	t.Logf("ctl session:\n%s", out)

	// After the expiry, nothing more of the device is traced.
	poll.Until(t, poll.Patience, func() error {
		if time.Since(start) < 5*time.Second+100*time.Millisecond {
			return fmt.Errorf("trace not expired yet")
		}
		return nil
	})
	if _, err := Exchange(ctx, d, "tick"); err != nil { // seq 3
		t.Fatal(err)
	}
	mustCtl(t, bin, gwB, tok, []string{"kick", dev, "--reason", "trace test"}, "kicked "+dev)
	poll.Until(t, poll.Patience, func() error {
		r := ctl(t, bin, gwB, tok, "disconnects", "--device", dev)
		if r.code != 0 || !strings.Contains(r.out, dev) || !strings.Contains(r.out, "takeover") {
			return fmt.Errorf("disconnects: %+v", r)
		}
		return nil
	})
	out = mustCtl(t, bin, gwA, tok, []string{"session", dev}, "last disconnect  takeover", "on "+gwB.Name)
	t.Logf("ctl session after the kick:\n%s", out)
	t.Logf("ctl disconnects:\n%s", mustCtl(t, bin, gwB, tok, []string{"disconnects", "--device", dev}))
	// A marker: once B and the shard logged another trace's start, what
	// they logged before it is in their logs.
	mustCtl(t, bin, gwA, tok, []string{"trace", "marker-device", "--for", "1m"})
	poll.Until(t, poll.Patience, func() error {
		for _, pr := range []*Proc{gwB, sh} {
			if !strings.Contains(pr.Log(), "device=marker-device") {
				return fmt.Errorf("%s has not logged the marker trace", pr.Name)
			}
		}
		return nil
	})
	for _, pr := range []*Proc{gwA, gwB, sh} {
		t.Logf("%s's trace lines:\n%s", pr.Name, strings.Join(traceLines(pr.Log(), id), "\n"))
	}
	for _, pr := range []*Proc{gwB, sh} {
		l := traceLines(pr.Log(), id)
		if hasLine(l, "seq=3 ") || hasLine(l, "closed") {
			t.Fatalf("%s traced the device after the trace expired: %q", pr.Name, l)
		}
	}
}
