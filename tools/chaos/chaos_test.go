package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/leakcheck"
	"github.com/switchyard-gw/switchyard/internal/poll"
)

// minuteEvents is the one-minute test's event set: every kind. (Drains
// of shards were left out while a drained shard restarted under its name
// found the gateways' circuit for it open; a new link now closes it,
// router.Circuit.Reset.)
var minuteEvents = []string{drainShard, killShard, addShard, drainGateway, killGateway}

// TestChaosMinute is the one-minute chaos run of `make test`: 3 gateways
// and 4 counter shards as processes (built here without -race), 60
// sessions of verified reliable traffic, random events for about 45 s.
// It passes when no incident broke the allowed table, events ran and
// frames flowed. A run the box starved (gateways took live shards out of
// their rings: links read nothing for the product's 3 s LinkTimeout) is
// inconclusive and skipped with its verdict logged: `make chaos` judges
// those strictly.
func TestChaosMinute(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process chaos run; skipped under -short")
	}
	bin := t.TempDir()
	buildBinaries(t, bin)
	dir := t.TempDir()
	args := []string{"--duration", "60s", "--tail", "15s", "--sessions", "60", "--rate", "2", "--ramp", "60",
		"--settle", poll.Patience.String(), "--pause-max", "2s", "--down-max", "2s",
		"--events", strings.Join(minuteEvents, ","), "--bin", bin, "--dir", dir}
	c, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Deadline)
	defer cancel()
	var out bytes.Buffer
	s := run(ctx, c, &out)
	t.Logf("seed %d, logs in %s (kept only on failure):\n%s%s", c.Seed, dir, out.String(), s.line())
	switch {
	case s.Pass:
	case starved(s):
		t.Skipf("inconclusive: the box starved the cluster (%d links or shards lost with no event), and every failure came with it; verdict: %s", len(s.Unplanned), s.line())
	default:
		keep(t, dir)
		t.Fatalf("chaos run failed: %v", s.Failures)
	}
	if len(s.Events) == 0 || s.Sent == 0 || s.Received == 0 {
		t.Errorf("a run that passed with events %d, frames sent %d, received %d", len(s.Events), s.Sent, s.Received)
	}
}

// aftermath is how long after an unplanned link or shard loss its
// consequences are put down to it: the devices' retries, the moves back,
// the gateways' views converging.
const aftermath = 30 * time.Second

// starved reports whether the box, not the events, explains a failed
// run: events ran, frames flowed, the failures are incidents or an
// unsettled event, and either a gateway took a live shard out of its ring
// (its consequences last to the end of the run: docs/chaos.md, bug 2) or
// every unexplained incident and unsettled event fell within an
// unplanned link loss or its aftermath.
func starved(s *summary) bool {
	if len(s.Unplanned) == 0 || len(s.Events) == 0 || s.Received == 0 {
		return false
	}
	for _, f := range s.Failures {
		if !strings.Contains(f, "incidents no event explains") && !strings.Contains(f, "not settled") {
			return false
		}
	}
	for _, u := range s.Unplanned {
		if u.Kind == shardSilent {
			return true
		}
	}
	near := func(from, to time.Time) bool {
		for _, u := range s.Unplanned {
			if !to.Before(u.Start) && !from.After(u.End.Add(aftermath)) {
				return true
			}
		}
		return false
	}
	for _, at := range s.Tally.Times {
		if !near(at, at) {
			return false
		}
	}
	for _, ev := range s.Events {
		if ev.Error != "" && !near(ev.Start, ev.End) {
			return false
		}
	}
	return true
}

// buildBinaries builds switchyard and loadgen into dir (no -race: the
// children are the system under test, not this test binary).
func buildBinaries(t *testing.T, dir string) {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	for pkg, name := range map[string]string{"./cmd/switchyard": "switchyard", "./tools/loadgen": "loadgen"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
}

// keep copies a failed run's directory out of t.TempDir (removed after
// the test) and says where.
func keep(t *testing.T, dir string) {
	t.Helper()
	dst, err := os.MkdirTemp("", "switchyard-chaos-failed-")
	if err != nil {
		return
	}
	if err := exec.Command("cp", "-r", dir+"/.", dst).Run(); err == nil {
		t.Logf("the failed run's logs: %s", dst)
	}
}

func TestJudge(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) int64 { return t0.Add(time.Duration(s * float64(time.Second))).UnixMilli() }
	evs := []*event{
		{Kind: killGateway, Target: "gw1", Addr: "gw1:1", Start: t0.Add(10 * time.Second), End: t0.Add(20 * time.Second)},
		{Kind: killShard, Target: "s2", Start: t0.Add(30 * time.Second), End: t0.Add(40 * time.Second)},
		{Kind: drainShard, Target: "s3", Start: t0.Add(50 * time.Second), End: t0.Add(60 * time.Second)},
	}
	incs := []incident{
		{T: at(12), What: "disconnect", Cause: "eof", Addr: "gw1:1"},       // the killed gateway: allowed
		{T: at(12), What: "disconnect", Cause: "eof", Addr: "gw2:1"},       // another gateway: not
		{T: at(22), What: "handshake", Cause: "reset", Addr: "gw1:1"},      // within grace: allowed
		{T: at(25), What: "disconnect", Cause: "eof", Addr: "gw1:1"},       // after grace: not
		{T: at(31), What: "disconnect", Cause: "error_503", Addr: "gw2:1"}, // shard kill, any gateway
		{T: at(32), What: "up_dup", N: 1, Addr: "gw2:1"},                   // shard kill allows a repeat
		{T: at(32), What: "up_reset", N: 1, Addr: "gw2:1"},                 // but no reset
		{T: at(33), What: "up_lost", N: 4, Addr: "gw2:1"},                  // not loss
		{T: at(52), What: "resume_failed", N: 1, Addr: "gw3:1"},            // a drain allows no reset
		{T: at(53), What: "disconnect", Cause: "error_503", Addr: "gw3:1"}, // nor a 503
		{T: at(54), What: "up_lost", N: -1, Addr: "gw3:1"},                 // a late frame: lost -1 …
		{T: at(54), What: "up_reorder", N: 1, Addr: "gw3:1"},               // … reordered +1
		{T: at(70), What: "unanswered", N: 2, Addr: "gw3:1"},               // after every event
	}
	got := judge(incs, evs, 3*time.Second)
	want := map[string]int64{kDisconnect: 3, kLost: 4 - 1 + 2, kReset: 2, kReorder: 1}
	for _, k := range violationKinds {
		if got.Bad[k] != want[k] {
			t.Errorf("%s: %d not allowed, want %d (tally %+v)", k, got.Bad[k], want[k], got)
		}
	}
	if got.Allowed[kDisconnect] != 3 || got.Allowed[kDup] != 1 {
		t.Errorf("allowed %v", got.Allowed)
	}
	if got.Ends["eof"] != 3 || got.Ends["error_503"] != 2 {
		t.Errorf("ends by cause %v", got.Ends)
	}
}

// TestAllowedTable checks that every event kind has a row citing the
// guarantees and that today's rows allow no loss, reset or reordering
// anywhere, and a repeat only where a shard's process dies.
func TestAllowedTable(t *testing.T) {
	for _, k := range append(eventKinds, shardSilent, linkLost) {
		row, ok := allowed[k]
		if !ok || row.Rests == "" {
			t.Errorf("%s: no row or no citation", k)
		}
		for _, v := range row.Kinds {
			if v != kDup || (k != killShard && k != shardSilent) {
				t.Errorf("%s allows %s", k, v)
			}
		}
	}
	if len(allowed[drainShard].Ends)+len(allowed[addShard].Ends) != 0 {
		t.Error("a shard drain or join allows a disconnect")
	}
}

func TestStarved(t *testing.T) {
	t0 := time.Unix(1000, 0)
	sec := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	base := func() *summary {
		return &summary{Received: 1, Events: []*event{{N: 1, Kind: drainShard, Start: sec(0), End: sec(10)}},
			Unplanned: []*event{{Kind: linkLost, Start: sec(20), End: sec(25)}},
			Failures:  []string{"3 incidents no event explains"}}
	}
	s := base()
	s.Tally.Times = []time.Time{sec(21), sec(50)}
	if !starved(s) {
		t.Error("incidents during and 25 s after a shard loss: starved")
	}
	s.Tally.Times = append(s.Tally.Times, sec(5))
	if starved(s) {
		t.Error("an incident before any unplanned loss: not starved")
	}
	s.Unplanned = append(s.Unplanned, &event{Kind: shardSilent, Start: sec(30), End: sec(32)})
	if !starved(s) {
		t.Error("a shard out of a ring with its process up: starved, whatever followed")
	}
	s = base()
	s.Unplanned = nil
	if starved(s) {
		t.Error("no unplanned loss: not starved")
	}
	s = base()
	s.Failures = append(s.Failures, "no frames flowed")
	if starved(s) {
		t.Error("another failure: not starved")
	}
}

func TestParseProgress(t *testing.T) {
	p, ok := parseProgress("loadgen: t=  12s up=290/300 sent/s=600 recv/s=598 p50=1.2ms p99=3.4ms errors=3 disc=2 reconn=1 moved=7")
	if !ok || p.T != 12 || p.Up != 290 || p.Sessions != 300 || p.SentPS != 600 || p.RecvPS != 598 ||
		p.Errors != 3 || p.Disc != 2 || p.Reconn != 1 || p.Moved != 7 {
		t.Errorf("%+v %v", p, ok)
	}
	if _, ok := parseProgress("loadgen: no session came up"); ok {
		t.Error("not a progress line")
	}
}

func TestSilentShards(t *testing.T) {
	dir := t.TempDir()
	log := `time=2026-12-03T20:40:50.000Z level=INFO msg="ring changed" component=gateway shards=4
time=2026-12-03T20:40:51.058Z level=WARN msg="backend link lost" component=gateway shard=s4 addr=127.0.0.1:1 err="server: shard silent (link heartbeat timeout): nothing read for 1s"
time=2026-12-03T20:40:51.059Z level=WARN msg="shard down: every link lost, out of the ring until a link is back" component=gateway shard=s4 addr=127.0.0.1:1
time=2026-12-03T20:40:53.500Z level=INFO msg="shard back: a link stayed up" component=gateway shard=s4 addr=127.0.0.1:1
time=2026-12-03T20:41:10.000Z level=WARN msg="backend link lost" component=gateway shard=s2 addr=127.0.0.1:2 err=EOF
time=2026-12-03T20:41:10.001Z level=WARN msg="shard down: every link lost, out of the ring until a link is back" component=gateway shard=s2 addr=127.0.0.1:2
time=2026-12-03T20:41:26.000Z level=WARN msg="backend link lost" component=gateway shard=s3 addr=127.0.0.1:3 err=EOF
time=2026-12-03T20:41:26.001Z level=WARN msg="shard down: every link lost, out of the ring until a link is back" component=gateway shard=s3 addr=127.0.0.1:3
`
	if err := os.WriteFile(filepath.Join(dir, "gw1-1.log"), []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	cl := &cluster{dir: dir, gateways: []*member{{name: "gw1", gateway: true, addr: "127.0.0.1:9", starts: 1}}}
	t0, _ := time.Parse(time.RFC3339, "2026-12-03T20:41:05Z")
	planned := []*event{{Kind: killShard, Target: "s2", Start: t0, End: t0.Add(10 * time.Second)},
		{Kind: drainGateway, Target: "gw1", Start: t0.Add(20 * time.Second), End: t0.Add(30 * time.Second)}}
	got := silentShards(cl, planned, t0.Add(time.Minute))
	// s4's link (3 s before its loss until it), then s4 out of the ring
	// (3 s before until its shard back); nothing of s2 (an event killed
	// it) nor of s3 (an event drained gw1).
	if len(got) != 2 || got[0].Kind != linkLost || got[1].Kind != shardSilent ||
		got[1].Target != "s4 at gw1" || got[1].Addr != "127.0.0.1:9" ||
		got[0].End.Sub(got[0].Start) != linkTimeout || got[1].End.Sub(got[1].Start) != linkTimeout+2441*time.Millisecond {
		for _, e := range got {
			t.Logf("%+v", *e)
		}
		t.Fatalf("%d unplanned, want s4's link lost, then s4 out of gw1's ring until its shard back", len(got))
	}
}

func TestFlags(t *testing.T) {
	c, err := parseFlags([]string{"--duration", "1m"}, io.Discard)
	if err != nil || c.Seed == 0 || c.Deadline < c.Duration || len(c.Events) != len(defaultEvents) {
		t.Errorf("%+v %v", c, err)
	}
	for _, bad := range [][]string{{"--events", "nap"}, {"--gateways", "2"}, {"--duration", "10s", "--tail", "15s"}} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestMain(m *testing.M) { leakcheck.Main(m, nil) }
