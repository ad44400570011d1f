package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	m := parseMetrics(strings.NewReader(`# HELP x
switchyard_sessions 14286
switchyard_disconnects_total{reason="handshake_timeout"} 1495
switchyard_disconnects_total{reason="peer"} 3

`))
	if m["switchyard_sessions"] != 14286 || m[`switchyard_disconnects_total{reason="handshake_timeout"}`] != 1495 || len(m) != 3 {
		t.Fatalf("%v", m)
	}
}

// TestConnectRate: the rate between the 10 % and 90 % crossings,
// interpolated between samples, and 0 when the sessions never got there.
func TestConnectRate(t *testing.T) {
	ss := []sample{{T: 1, Sessions: 0}, {T: 2, Sessions: 500}, {T: 3, Sessions: 1000}}
	// 100 at t=1.2, 900 at t=2.8: 800 sessions in 1.6 s.
	if got := connectRate(ss, 1000); got < 499.9 || got > 500.1 {
		t.Errorf("connectRate = %v, want 500", got)
	}
	if got := connectRate(ss[:2], 1000); got != 0 {
		t.Errorf("never at 90 %%: %v, want 0", got)
	}
}

// TestVerdict: a run passes only with every session up, no disconnect on
// either side and no error.
func TestVerdict(t *testing.T) {
	c := &config{Sessions: 100}
	good := func() *summary {
		return &summary{UpAfter: 3, Loadgen: &loadgenReport{Handshakes: 100}}
	}
	if err := good().verdict(c); err != nil {
		t.Fatalf("good run: %v", err)
	}
	for name, spoil := range map[string]func(*summary){
		"never up":            func(s *summary) { s.UpAfter = 0 },
		"gateway disconnects": func(s *summary) { s.UnexpectedDisconnects = 1 },
		"no loadgen report":   func(s *summary) { s.Loadgen = nil },
		"few handshakes":      func(s *summary) { s.Loadgen.Handshakes = 99 },
		"loadgen disconnect":  func(s *summary) { s.Loadgen.Disconnects = 1 },
		"loadgen reconnect":   func(s *summary) { s.Loadgen.Reconnects = 1 },
		"loadgen error":       func(s *summary) { s.Loadgen.Errors = map[string]int64{"408": 1} },
		"stopped early":       func(s *summary) { s.StoppedBy = "memory" },
	} {
		s := good()
		spoil(s)
		if err := s.verdict(c); err == nil || s.Pass {
			t.Errorf("%s: passed", name)
		}
	}
}

// TestFinish derives per-session figures from the samples: the last one
// with every session up is the held state.
func TestFinish(t *testing.T) {
	s := &summary{Before: sample{GatewayRSS: 100e6, Slab: 1e9, Disconnects: 0}}
	s.Samples = []sample{
		{T: 1, Sessions: 500, GatewayRSS: 200e6},
		{T: 2, Sessions: 1000, GatewayRSS: 300e6, Slab: 1.008e9, GatewayCPU: 100},
		{T: 12, Sessions: 1000, GatewayRSS: 303e6, Slab: 1.008e9, GatewayCPU: 600, Disconnects: 2},
		{T: 13.5, Sessions: 1000, GatewayRSS: 303e6, Disconnects: 500}, // loadgen stopping
		{T: 16, Sessions: 10, GatewayRSS: 101e6, Disconnects: 992},
	}
	c := &config{Sessions: 1000, Ramp: 1000, Hold: 14 * time.Second} // load ends at t=15
	s.finish(c, &cluster{dir: t.TempDir()})
	if s.Held.T != 12 || s.GatewayBytesPerSession != 203e3 || s.KernelBytesPerSocket != 4000 || s.UnexpectedDisconnects != 2 {
		t.Errorf("held t=%v gateway %v B kernel %v B disconnects %v", s.Held.T, s.GatewayBytesPerSession, s.KernelBytesPerSocket, s.UnexpectedDisconnects)
	}
	if s.HoldDisconnects != 2 {
		t.Errorf("disconnects once all were up: %v, want 2", s.HoldDisconnects)
	}
	if s.GatewayBytesPerSessionUp != 200e3 || s.First.T != 2 {
		t.Errorf("first t=%v gateway %v B", s.First.T, s.GatewayBytesPerSessionUp)
	}
	if s.GatewayCoresHeld <= 0 {
		t.Errorf("gateway cores %v", s.GatewayCoresHeld)
	}
}

// TestFinishPartial: when the sessions never all came up, the figures are
// per session at the most that were.
func TestFinishPartial(t *testing.T) {
	s := &summary{Before: sample{GatewayRSS: 100e6}}
	s.Samples = []sample{{T: 1, Sessions: 400, GatewayRSS: 180e6}, {T: 2, Sessions: 500, GatewayRSS: 200e6}, {T: 3, Sessions: 450, GatewayRSS: 190e6}}
	s.finish(&config{Sessions: 1000, Ramp: 100, Hold: time.Minute}, &cluster{dir: t.TempDir()})
	if s.Held.T != 2 || s.GatewayBytesPerSession != 200e3 {
		t.Errorf("held t=%v gateway %v B per session", s.Held.T, s.GatewayBytesPerSession)
	}
}

// TestReadMoves sums the move metrics of several gateways: results by
// label, the histogram's buckets by bound, drops and disconnects.
func TestReadMoves(t *testing.T) {
	page := func(s string) map[string]float64 { return parseMetrics(strings.NewReader(s)) }
	r := readMoves([]map[string]float64{
		page(`switchyard_session_moves_started_total 10
switchyard_session_moves_total{result="ok"} 9
switchyard_session_moves_total{result="timeout"} 1
switchyard_sessions_moving 0
switchyard_session_move_duration_seconds_bucket{le="0.005"} 4
switchyard_session_move_duration_seconds_bucket{le="0.01"} 9
switchyard_session_move_duration_seconds_bucket{le="+Inf"} 9
switchyard_session_move_duration_seconds_sum 0.05
switchyard_session_move_duration_seconds_count 9
switchyard_frames_dropped_total{reason="move"} 2
switchyard_frames_dropped_total{reason="gap"} 5
switchyard_disconnects_total{reason="unavailable"} 1
`),
		page(`switchyard_session_moves_started_total 5
switchyard_session_moves_total{result="ok"} 3
switchyard_sessions_moving 2
switchyard_session_move_duration_seconds_bucket{le="0.01"} 3
switchyard_session_move_duration_seconds_bucket{le="+Inf"} 3
`),
		nil, // did not answer
	})
	if r.Started != 15 || r.Results["ok"] != 12 || r.Results["timeout"] != 1 || r.ended() != 13 || r.Moving != 2 {
		t.Errorf("started %v results %v moving %v", r.Started, r.Results, r.Moving)
	}
	if r.Buckets[0.01] != 12 || r.Buckets[math.Inf(1)] != 12 || r.DurCount != 9 || r.DroppedMove != 2 || r.Disconnects != 1 || r.Scraped != 2 {
		t.Errorf("buckets %v count %v dropped %v disconnects %v scraped %v", r.Buckets, r.DurCount, r.DroppedMove, r.Disconnects, r.Scraped)
	}
}

// TestSettledAndDelta: settled only when moves happened since the base,
// all ended, none runs, every gateway answered with the new ring size;
// the event's figures are the differences.
func TestSettledAndDelta(t *testing.T) {
	base := moveReading{Started: 100, Results: map[string]float64{"ok": 100}, Scraped: 3,
		Buckets: map[float64]float64{0.01: 100, 0.1: 100, math.Inf(1): 100}, DurCount: 100, DurSum: 1}
	now := moveReading{Started: 300, Results: map[string]float64{"ok": 299, "closed": 1}, Scraped: 3, RingMin: 3, RingMax: 3,
		Buckets: map[float64]float64{0.01: 150, 0.1: 298, math.Inf(1): 300}, DurCount: 300, DurSum: 11, DroppedMove: 4}
	if !now.settled(base, 3) {
		t.Fatal("not settled")
	}
	for name, spoil := range map[string]func(*moveReading){
		"no move":         func(r *moveReading) { r.Started, r.Results = 100, map[string]float64{"ok": 100} },
		"one running":     func(r *moveReading) { r.Moving = 1 },
		"not all ended":   func(r *moveReading) { r.Results = map[string]float64{"ok": 299} },
		"old ring":        func(r *moveReading) { r.RingMax = 4 },
		"gateway missing": func(r *moveReading) { r.Scraped = 2 },
	} {
		r := now
		spoil(&r)
		if r.settled(base, 3) {
			t.Errorf("%s: settled", name)
		}
	}
	var ev moveEvent
	now.delta(base, &ev)
	if ev.MovesStarted != 200 || ev.Moves["ok"] != 199 || ev.Moves["closed"] != 1 || ev.failed() != 1 || ev.MoveMeanS != 0.05 || ev.DroppedMove != 4 {
		t.Errorf("event %+v", ev)
	}
	// 200 moves: 50 within 10 ms, 198 within 100 ms, 2 beyond.
	if ev.MoveP50S != 0.1 || ev.MoveP99S != 0.1 || !math.IsInf(ev.MoveMaxS, 1) {
		t.Errorf("p50 %v p99 %v max %v", ev.MoveP50S, ev.MoveP99S, ev.MoveMaxS)
	}
}

func TestBucketQuantile(t *testing.T) {
	b := map[float64]float64{0.005: 10, 0.01: 90, 0.025: 99, 0.05: 100, math.Inf(1): 100}
	for _, tc := range []struct{ q, want float64 }{{0.1, 0.005}, {0.5, 0.01}, {0.99, 0.025}, {1, 0.05}} {
		if got := bucketQuantile(b, tc.q); got != tc.want {
			t.Errorf("q %v: %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := bucketQuantile(map[float64]float64{math.Inf(1): 0}, 0.5); got != 0 {
		t.Errorf("empty: %v", got)
	}
}

// TestProgressLatency reads loadgen's progress lines and takes the
// latency around an event: the median second of the ten before it, the
// worst second from it until a second after it settled.
func TestProgressLatency(t *testing.T) {
	log := `loadgen: t=   1s up=10/10 sent/s=50 recv/s=50 p50=1ms p99=5ms errors=0 disc=0 reconn=0 moved=0
some other line
`
	for i := 2; i <= 10; i++ {
		log += fmt.Sprintf("loadgen: t=%4ds up=10/10 sent/s=50 recv/s=50 p50=1ms p99=%dms errors=0 disc=0 reconn=0 moved=0\n", i, 4+i%3)
	}
	log += `loadgen: t=  11s up=10/10 sent/s=50 recv/s=50 p50=1.5ms p99=30ms errors=0 disc=0 reconn=0 moved=6
loadgen: t=  12s up=10/10 sent/s=50 recv/s=50 p50=2ms p99=20ms errors=1 disc=0 reconn=0 moved=3
loadgen: t=  13s up=10/10 sent/s=50 recv/s=50 p50=1ms p99=5ms errors=0 disc=0 reconn=0 moved=0
loadgen: t=  14s up=10/10 sent/s=50 recv/s=50 p50=1ms p99=90ms errors=0 disc=0 reconn=0 moved=1
`
	ps := parseProgress(strings.NewReader(log))
	if len(ps) != 14 || ps[10].P99 != 30*time.Millisecond || ps[10].Moved != 6 || ps[11].Errors != 1 {
		t.Fatalf("%d lines: %+v", len(ps), ps[10:12])
	}
	// At t=10.2 s, settled 1.5 s later: the lines of t=11, 12 and 13 are
	// during (13 covers 12–13 s, before 11.7 + 1); 14 is not.
	ev := moveEvent{AtS: 10.2, SettledS: 1.5}
	ev.latency(ps)
	if ev.P99BeforeMS != 5 || ev.P50BeforeMS != 1 || ev.P99DuringMS != 30 || ev.P50DuringMS != 2 || ev.DeviceMoves != 9 || ev.DeviceErrors != 1 {
		t.Errorf("%+v", ev)
	}
}

// TestEventVerdict: an event fails the run when it did not settle, took
// longer than --move-target, moved nothing, had a failed move, or (a
// drain) its shard did not exit; so does a --verify violation.
func TestEventVerdict(t *testing.T) {
	c := &config{Sessions: 100, Rate: 5, Backends: 4, DrainAfter: time.Second, AddAfter: 2 * time.Second, MoveTarget: 2 * time.Second}
	good := func() *summary {
		lg := &loadgenReport{Handshakes: 100, Verify: &verifyReport{OK: true}}
		return &summary{UpAfter: 3, Loadgen: lg, Events: []moveEvent{
			{Kind: "drain", SettledS: 1.2, ShardExitS: 1.5, MovesStarted: 25, Moves: map[string]float64{"ok": 25}},
			{Kind: "join", SettledS: 0.4, MovesStarted: 20, Moves: map[string]float64{"ok": 20}},
		}}
	}
	if err := good().verdict(c); err != nil {
		t.Fatalf("good run: %v", err)
	}
	for name, spoil := range map[string]func(*summary){
		"unsettled":      func(s *summary) { s.Events[0].Unsettled = true },
		"slow":           func(s *summary) { s.Events[1].SettledS = 2.01 },
		"nothing moved":  func(s *summary) { s.Events[1].MovesStarted = 0 },
		"a move failed":  func(s *summary) { s.Events[0].Moves["timeout"] = 1 },
		"shard stayed":   func(s *summary) { s.Events[0].ShardExitS = 0 },
		"event missing":  func(s *summary) { s.Events = s.Events[:1] },
		"verify failed":  func(s *summary) { s.Loadgen.Verify.OK = false },
		"no verify":      func(s *summary) { s.Loadgen.Verify = nil },
		"device dropped": func(s *summary) { s.Loadgen.Disconnects = 1 },
	} {
		s := good()
		spoil(s)
		if err := s.verdict(c); err == nil || s.Pass {
			t.Errorf("%s: passed", name)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := config{App: "counter", Rate: 5, Backends: 4, DrainAfter: 20 * time.Second, AddAfter: 50 * time.Second, Hold: 80 * time.Second}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	for name, spoil := range map[string]func(*config){
		"app":        func(c *config) { c.App = "nope" },
		"rate":       func(c *config) { c.Rate = -1 },
		"one shard":  func(c *config) { c.Backends = 1 },
		"short hold": func(c *config) { c.Hold = 60 * time.Second },
	} {
		c := ok
		spoil(&c)
		if c.validate() == nil {
			t.Errorf("%s: valid", name)
		}
	}
	if p := ok.plan(); len(p) != 2 || p[0].kind != "drain" || p[1].kind != "join" {
		t.Errorf("plan %v", p)
	}
	ok.DrainAfter = 60 * time.Second
	if p := ok.plan(); p[0].kind != "join" {
		t.Errorf("plan %v: the earlier event first", p)
	}
}

// TestReadGateways sums the other gateways' sessions, resumes and
// disconnects and reads the lost one's sessions and GOAWAYs; a gateway
// that did not answer counts nothing.
func TestReadGateways(t *testing.T) {
	page := func(s string) map[string]float64 { return parseMetrics(strings.NewReader(s)) }
	pages := []map[string]float64{
		page(`switchyard_sessions 3400
switchyard_sessions_resumed_total 10
switchyard_resume_rejected_total 1
switchyard_disconnects_total{reason="peer"} 2
switchyard_errors_sent_total{code="503"} 4
switchyard_backend_links 8
switchyard_frames_dropped_total{reason="gap"} 3
switchyard_connections_accepted_total 12
switchyard_accept_queue_length 6
`),
		nil,
		page(`switchyard_sessions 3300
switchyard_sessions_resumed_total 5
switchyard_goaways_sent_total 7
switchyard_disconnects_total{reason="drain"} 7
`),
	}
	r := readGateways(pages, []int{2})
	if r.held != 3300 || r.goaways != 7 || r.sessions != 3400 || r.resumed != 10 || r.rejected != 1 || r.disconnect != 2 ||
		r.unavailable != 4 || r.links != 8 || r.dropped["gap"] != 3 || r.accepted != 12 || r.acceptQueue != 6 {
		t.Errorf("%+v", r)
	}
	// Two lost at once (--kill-gateways 2): their sessions add up apart.
	if r := readGateways(pages, []int{0, 2}); r.held != 6700 || r.sessions != 0 || r.resumed != 0 {
		t.Errorf("two lost: %+v", r)
	}
}

// TestGatewayDevices takes the devices' reconnects from loadgen's rows:
// the rows after the event until two seconds after it settled, from the
// first with a reconnect to the last, their mean, most and ratio, and
// when the last came back.
func TestGatewayDevices(t *testing.T) {
	rows := []loadgenSecond{
		{T: 20, Up: 100}, {T: 21, Up: 100, Reconnected: 3}, // before the event (at 21.5): not counted
		{T: 22, Up: 100, Disconnects: 1, Errors: 1, Reconnects: 4}, {T: 23, Up: 90, Reconnected: 10, Disconnects: 20, Errors: 20, Reconnects: 24},
		{T: 24, Up: 95, Reconnected: 30, Disconnects: 10, Reconnects: 20}, {T: 25, Up: 100, Reconnected: 20},
		{T: 26, Up: 100}, {T: 28, Up: 100, Reconnected: 5}, // two seconds after it settled: another event's
	}
	ev := gatewayEvent{AtS: 21.5, ResumedS: 3.2, BackS: 3.3, ExitS: 2}
	ev.devices(rows)
	if !slices.Equal(ev.DeviceReconnects, []int64{10, 30, 20}) || ev.ReconnectTotal != 60 || ev.ReconnectMean != 20 ||
		ev.ReconnectMax != 30 || ev.PeakRatio != 1.5 || ev.DeviceBackS != 3.5 || ev.DeviceDisconn != 31 || ev.DeviceErrors != 21 {
		t.Errorf("%+v", ev)
	}
	// Attempts: from the first row with any to the last (4, 24, 20).
	if !slices.Equal(ev.Attempts, []int64{4, 24, 20}) || ev.AttemptMax != 24 || ev.AttemptMean != 16 || ev.AttemptRatio != 1.5 {
		t.Errorf("attempts: %+v", ev)
	}
	none := gatewayEvent{AtS: 21.5}
	none.devices(rows[:2])
	if none.ReconnectTotal != 0 || none.PeakRatio != 0 {
		t.Errorf("no reconnect: %+v", none)
	}
	unsettled := gatewayEvent{AtS: 21.5, Unsettled: true}
	unsettled.devices(rows)
	if unsettled.ReconnectTotal != 65 || len(unsettled.DeviceReconnects) != 5 {
		t.Errorf("unsettled: the whole window: %+v", unsettled)
	}
}

// TestGatewayVerdict: a run that loses a gateway passes with its devices'
// disconnects, reconnects and connection errors, and fails when the
// sessions were not all back, a resume started a new session, the drain's
// reconnects peaked above the target, another error came, --verify found
// a violation, or the event did not run.
func TestGatewayVerdict(t *testing.T) {
	c := &config{Sessions: 100, Rate: 5, Backends: 2, GwDrainAfter: time.Second, GwKillAfter: 50 * time.Second, PeakTarget: 2}
	good := func() *summary {
		lg := &loadgenReport{Handshakes: 200, Disconnects: 66, Reconnects: 80, Verify: &verifyReport{OK: true},
			Errors: map[string]int64{"eof": 33, "conn_reset": 33, "conn_refused": 14}}
		return &summary{UpAfter: 3, UnexpectedDisconnects: 33, Loadgen: lg, GatewayEvents: []gatewayEvent{
			{Kind: "gateway-drain", Held: 33, Resumed: 33, ResumedS: 9, BackS: 9, PeakRatio: 1.6},
			{Kind: "gateway-kill", Held: 33, Resumed: 33, ResumedS: 0.5, BackS: 0.5, PeakRatio: 3},
		}}
	}
	if err := good().verdict(c); err != nil {
		t.Fatalf("good run: %v", err)
	}
	for name, spoil := range map[string]func(*summary){
		"unsettled":     func(s *summary) { s.GatewayEvents[1].Unsettled = true },
		"held nothing":  func(s *summary) { s.GatewayEvents[0].Held = 0 },
		"new session":   func(s *summary) { s.GatewayEvents[1].ResumeRejected = 1 },
		"drain peak":    func(s *summary) { s.GatewayEvents[0].PeakRatio = 2.01 },
		"other error":   func(s *summary) { s.Loadgen.Errors["503"] = 1 },
		"verify failed": func(s *summary) { s.Loadgen.Verify.OK = false },
		"event missing": func(s *summary) { s.GatewayEvents = s.GatewayEvents[:1] },
	} {
		s := good()
		spoil(s)
		if err := s.verdict(c); err == nil || s.Pass {
			t.Errorf("%s: passed", name)
		}
	}
	// Without a gateway event the same disconnects fail the run.
	c.GwDrainAfter, c.GwKillAfter = 0, 0
	s := good()
	s.GatewayEvents = nil
	if err := s.verdict(c); err == nil {
		t.Error("disconnects without a gateway event: passed")
	}
}

// TestValidateGatewayEvents: a gateway event needs a second gateway and a
// hold that covers its window; the plan puts it in time order.
func TestValidateGatewayEvents(t *testing.T) {
	ok := config{App: "counter", Rate: 5, Backends: 4, Sessions: 10000, PerGateway: 3400, GwDrainAfter: 20 * time.Second,
		GwKillAfter: 10 * time.Second, Hold: 60 * time.Second, PeakTarget: 2}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	two := ok
	two.KillGateways = 2
	if err := two.validate(); err != nil {
		t.Errorf("--kill-gateways 2 of 3: %v", err)
	}
	for name, spoil := range map[string]func(*config){
		"one gateway": func(c *config) { c.PerGateway = 10000 },
		"short hold":  func(c *config) { c.Hold = 59 * time.Second },
		"negative":    func(c *config) { c.GwKillAfter = -time.Second },
		"peak":        func(c *config) { c.PeakTarget = -1 },
		"kill all":    func(c *config) { c.KillGateways = 3 },
		"kill < 0":    func(c *config) { c.KillGateways = -1 },
	} {
		c := ok
		spoil(&c)
		if c.validate() == nil {
			t.Errorf("%s: valid", name)
		}
	}
	if p := ok.plan(); len(p) != 2 || p[0].kind != "gateway-kill" || p[1].kind != "gateway-drain" {
		t.Errorf("plan %v", p)
	}
}

// TestReadMovesSumsCauses: the move series carry a cause label; readMoves
// sums over it (and still reads the unlabelled series of older builds).
func TestReadMovesSumsCauses(t *testing.T) {
	page := map[string]float64{
		`switchyard_session_moves_started_total{cause="join"}`:                     3,
		`switchyard_session_moves_started_total{cause="crash"}`:                    2,
		`switchyard_session_move_duration_seconds_bucket{cause="join",le="0.01"}`:  1,
		`switchyard_session_move_duration_seconds_bucket{cause="crash",le="0.01"}`: 2,
		`switchyard_session_move_duration_seconds_sum{cause="join"}`:               0.5,
		`switchyard_session_move_duration_seconds_count{cause="join"}`:             3,
		`switchyard_session_move_duration_seconds_count{cause="crash"}`:            2,
	}
	r := readMoves([]map[string]float64{page, {"switchyard_session_moves_started_total": 1}})
	if r.Started != 6 || r.Buckets[0.01] != 3 || r.DurSum != 0.5 || r.DurCount != 5 {
		t.Fatalf("started %v, buckets %v, sum %v, count %v", r.Started, r.Buckets, r.DurSum, r.DurCount)
	}
}

// TestStormVerdict: a reconnect storm passes with the gateways shedding
// (ERROR 503 with a retry hint) and fails on a handshake timeout (408) or
// a connection attempt loadgen gave up.
func TestStormVerdict(t *testing.T) {
	c := &config{Sessions: 100, Backends: 2, StormAfter: time.Second, PeakTarget: 2}
	good := func() *summary {
		lg := &loadgenReport{Handshakes: 200, Disconnects: 100, Reconnects: 140, Verify: &verifyReport{OK: true},
			Errors: map[string]int64{"503": 40}}
		return &summary{UpAfter: 3, UnexpectedDisconnects: 100, Loadgen: lg, GatewayEvents: []gatewayEvent{
			{Kind: "storm", Gateway: "all", Held: 100, Resumed: 100, ResumedS: 2, BackS: 0.1, Shed: 40},
		}}
	}
	if err := good().verdict(c); err != nil {
		t.Fatalf("good storm: %v", err)
	}
	for name, spoil := range map[string]func(*summary){
		"handshake timeouts": func(s *summary) { s.GatewayEvents[0].HandshakeTimeouts = 1 },
		"given up":           func(s *summary) { s.Loadgen.Errors["timeout"] = 1 },
		"unsettled":          func(s *summary) { s.GatewayEvents[0].Unsettled = true },
		"storm missing":      func(s *summary) { s.GatewayEvents = nil },
	} {
		s := good()
		spoil(s)
		if err := s.verdict(c); err == nil || s.Pass {
			t.Errorf("%s: passed", name)
		}
	}
	if c.plan()[0].kind != "storm" || c.gatewayEvents() != 1 {
		t.Errorf("plan %v, gateway events %d", c.plan(), c.gatewayEvents())
	}
}
