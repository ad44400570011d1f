package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// summary is the run's result (--dir/chaos.json) and its last line.
type summary struct {
	Pass     bool           `json:"pass"`
	Config   *config        `json:"config"`
	WallS    float64        `json:"wall_s"`
	Events   []*event       `json:"events"`
	ByKind   map[string]int `json:"events_by_kind"`
	Sent     int64          `json:"frames_sent"`
	Received int64          `json:"frames_received"`
	Tally    tally          `json:"tally"`
	Failures []string       `json:"failures,omitempty"`
	// Unplanned are the shards gateways took out of their rings while
	// their process ran (silent.go): judged by the shard-silent row.
	Unplanned []*event       `json:"unplanned,omitempty"`
	Loadgen   map[string]any `json:"loadgen,omitempty"` // loadgen's own summary
}

func (s *summary) fail(format string, args ...any) {
	s.Failures = append(s.Failures, fmt.Sprintf(format, args...))
}

// line is the one-line summary.
func (s *summary) line() string {
	verdict := "PASS"
	if !s.Pass {
		verdict = "FAIL"
	}
	_, kinds := countKinds(s.Events)
	var b strings.Builder
	fmt.Fprintf(&b, "chaos: %s %.0fs seed=%d events=%d (%s) sessions=%d frames=%s violations:", verdict, s.WallS,
		s.Config.Seed, len(s.Events), kinds, s.Config.Sessions, human(s.Sent))
	for _, k := range violationKinds {
		fmt.Fprintf(&b, " %s=%d", k, max(s.Tally.Bad[k], 0))
	}
	var al []string
	for _, k := range violationKinds {
		if n := s.Tally.Allowed[k]; n > 0 {
			name := k
			if k == kDisconnect {
				name = "disconnect"
			}
			al = append(al, fmt.Sprintf("%s=%d", name, n))
		}
	}
	if len(al) > 0 {
		fmt.Fprintf(&b, " (allowed: %s)", strings.Join(al, " "))
	}
	if len(s.Unplanned) > 0 {
		fmt.Fprintf(&b, " unplanned=%d", len(s.Unplanned))
	}
	if len(s.Failures) > 0 {
		fmt.Fprintf(&b, " failures=%d", len(s.Failures))
	}
	return b.String()
}

// human writes n as 812, 35.1k, 1.2M.
func human(n int64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// syncWriter serializes the progress lines of the run's goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) say(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(w.w, format+"\n", args...)
}

// run does the whole run and returns its summary.
func run(ctx context.Context, c *config, stdout io.Writer) *summary {
	start := time.Now()
	s := &summary{Config: c}
	out := &syncWriter{w: stdout}
	defer func() {
		s.WallS = time.Since(start).Seconds()
		s.Pass = len(s.Failures) == 0
		s.write(out)
	}()
	if err := prepareDir(c); err != nil {
		s.fail("%v", err)
		return s
	}
	out.say("chaos: seed=%d events=%s: %d gateways, %d shards, %d sessions at %g reliable frames/s for %v; logs in %s",
		c.Seed, strings.Join(c.Events, ","), c.Gateways, c.Shards, c.Sessions, c.Rate, c.Duration, c.Dir)
	cl, err := newCluster(c, c.Dir)
	if err != nil {
		s.fail("%v", err)
		return s
	}
	defer cl.stop(5 * time.Second)
	if cl.sp.err != nil {
		out.say("chaos: children keep the default priority (--nice %d: %v)", c.Nice, cl.sp.err)
	}
	if err := cl.start(ctx); err != nil {
		s.fail("cluster could not be started: %v", err)
		return s
	}
	ld, err := cl.startLoad()
	if err != nil {
		s.fail("loadgen: %v", err)
		return s
	}
	loadStart := time.Now()
	if err := pollCtx(ctx, c.Settle, func() error { return ld.allUp(loadStart) }); err != nil {
		s.fail("sessions did not come up: %v (log %s)", err, ld.log)
	} else {
		out.say("chaos: t=%5.1fs every session up; events until t=%.0fs", time.Since(loadStart).Seconds(), (c.Duration - c.Tail).Seconds())
		stopStatus := status(out, ld, loadStart)
		s.Events = events(ctx, c, cl, ld, out, loadStart, s)
		quiet(ctx, c, s.Events, loadStart)
		stopStatus()
	}
	s.collect(ctx, c, cl, ld, out)
	return s
}

func prepareDir(c *config) error {
	var err error
	if c.Dir == "" {
		c.Dir, err = os.MkdirTemp("", "switchyard-chaos-")
	} else {
		err = os.MkdirAll(c.Dir, 0o755)
	}
	if err != nil {
		return err
	}
	if c.Bin == "" {
		c.Bin = c.Dir
		return build(c.Dir)
	}
	return nil
}

// events runs random events until --duration minus --tail has passed
// since loadStart, one at a time, each settled before a random pause.
func events(ctx context.Context, c *config, cl *cluster, ld *load, out *syncWriter, loadStart time.Time, s *summary) []*event {
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15))
	end := loadStart.Add(c.Duration - c.Tail)
	var evs []*event
	for n := 1; time.Now().Before(end) && ctx.Err() == nil; n++ {
		kinds := cl.eligible(c.Events)
		if len(kinds) == 0 {
			s.fail("no event kind of %v can run", c.Events)
			break
		}
		ev := cl.runEvent(ctx, rng, ld, n, kinds[rng.IntN(len(kinds))])
		evs = append(evs, ev)
		out.say("chaos: t=%5.1fs event %d %s", ev.Start.Sub(loadStart).Seconds(), ev.N, ev.describe())
		if ev.Error != "" {
			s.fail("event %d %s %s: %s", ev.N, ev.Kind, ev.Target, ev.Error)
			break
		}
		pause := time.Duration(rng.Int64N(int64(c.PauseMax) + 1))
		select {
		case <-time.After(min(pause, time.Until(end))):
		case <-ctx.Done():
		}
	}
	return evs
}

// name is "event 3 kill-gateway gw2", or "unplanned shard-silent s1 at gw2".
func (ev *event) name() string {
	if ev.N == 0 {
		return "unplanned " + ev.Kind + " " + ev.Target
	}
	return fmt.Sprintf("event %d %s %s", ev.N, ev.Kind, ev.Target)
}

// describe is the event's progress line.
func (ev *event) describe() string {
	t := ev.Target
	if ev.Addr != "" {
		t += " (" + ev.Addr + ")"
	}
	d := fmt.Sprintf("%s %s", ev.Kind, t)
	if ev.Note != "" {
		d += " " + ev.Note
	}
	if !ev.Back.IsZero() {
		d += fmt.Sprintf(": back after %.1fs, settled after %.1fs", ev.Back.Sub(ev.Start).Seconds(), ev.End.Sub(ev.Start).Seconds())
	}
	if ev.Error != "" {
		d += ": " + ev.Error
	}
	return d
}

// quiet lets the load run without events until --duration, and at least
// --tail after the last event settled.
func quiet(ctx context.Context, c *config, evs []*event, loadStart time.Time) {
	until := loadStart.Add(c.Duration)
	if n := len(evs); n > 0 && evs[n-1].End.Add(c.Tail).After(until) {
		until = evs[n-1].End.Add(c.Tail)
	}
	select {
	case <-time.After(time.Until(until)):
	case <-ctx.Done():
	}
}

// status prints loadgen's latest progress every 10 s until stopped.
func status(out *syncWriter, ld *load, loadStart time.Time) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p, _ := ld.latest()
				out.say("chaos: t=%5.1fs up=%d/%d sent/s=%.0f recv/s=%.0f errors=%d disc=%d reconn=%d moved=%d (loadgen, last second)",
					time.Since(loadStart).Seconds(), p.Up, p.Sessions, p.SentPS, p.RecvPS, p.Errors, p.Disc, p.Reconn, p.Moved)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// collect ends loadgen (SIGTERM: it drains and writes its summary),
// reads its summary and incidents, and judges them.
func (s *summary) collect(ctx context.Context, c *config, cl *cluster, ld *load, out *syncWriter) {
	wait := loadDrain + 30*time.Second
	if ctx.Err() != nil {
		s.fail("stopped early: %v", context.Cause(ctx))
		wait = 10 * time.Second
	}
	ld.p.signal(syscall.SIGTERM)
	select {
	case <-ld.p.done:
	case <-time.After(wait):
		ld.p.kill()
		s.fail("loadgen did not finish within %v of SIGTERM (killed)", wait)
	}
	b, err := os.ReadFile(ld.json)
	if err == nil {
		err = json.Unmarshal(b, &s.Loadgen)
	}
	if err != nil {
		s.fail("loadgen summary: %v (log %s)", err, ld.log)
		return
	}
	num := func(k string) int64 { f, _ := s.Loadgen[k].(float64); return int64(f) }
	s.Sent, s.Received = num("frames_sent"), num("frames_received")
	incs, err := readIncidents(ld.incidents)
	if err != nil {
		s.fail("incidents: %v", err)
	}
	s.Unplanned = silentShards(cl, s.Events, time.Now())
	for _, ev := range s.Unplanned {
		out.say("chaos: unplanned %s %s from %s to %s (%s)", ev.Kind, ev.Target, ev.Start.Format("15:04:05.000"),
			ev.End.Format("15:04:05.000"), ev.Note)
	}
	s.Tally = judge(incs, append(slices.Clone(s.Events), s.Unplanned...), c.Grace)
	s.ByKind, _ = countKinds(s.Events)
	s.verdict(out, ld)
}

// verdict adds the failures the counts show and prints the unexplained
// incidents.
func (s *summary) verdict(out *syncWriter, ld *load) {
	if len(s.Events) == 0 {
		s.fail("no event ran")
	}
	if s.Sent == 0 || s.Received == 0 {
		s.fail("no frames flowed: sent %d, received %d", s.Sent, s.Received)
	}
	if n := s.Tally.badTotal(); n > 0 {
		s.fail("%d incidents no event explains (docs/chaos.md; incidents in %s)", n, ld.incidents)
	}
	for _, in := range s.Tally.Samples {
		out.say("chaos: unexplained at %s: %s%s n=%d gateway %s device %s%s", time.UnixMilli(in.T).Format("15:04:05.000"),
			in.What, prefixed(" cause=", in.Cause), in.count(), in.Addr, in.ID, s.during(in))
	}
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

// during names the events running at the incident's time, if any.
func (s *summary) during(in incident) string {
	at := time.UnixMilli(in.T)
	var names []string
	for _, ev := range append(slices.Clone(s.Events), s.Unplanned...) {
		if !at.Before(ev.Start) && (ev.End.IsZero() || !at.After(ev.End.Add(s.Config.Grace))) {
			names = append(names, ev.name())
		}
	}
	if len(names) == 0 {
		return " (no event running)"
	}
	return " (during " + strings.Join(names, ", ") + ")"
}

// write prints the failures and writes chaos.json.
func (s *summary) write(out *syncWriter) {
	for _, f := range s.Failures {
		out.say("chaos: FAIL: %s", f)
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	if s.Config.Dir != "" {
		_ = os.WriteFile(s.Config.Dir+"/chaos.json", append(b, '\n'), 0o644)
	}
	if s.Config.JSON != "" {
		_ = os.WriteFile(s.Config.JSON, append(b, '\n'), 0o644)
	}
}
