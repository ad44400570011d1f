package main

// Losing a gateway (issue 7, point 4): with --drain-gateway-after the run
// sends SIGTERM to the last gateway (it drains: readiness off, GOAWAY to
// each device, spread over the first half of its drain window, naming the
// other gateways; each device follows it, retry_ms later, and resumes its
// session there); with --kill-gateway-after it sends SIGKILL (its devices
// see the connection reset and reconnect to the next --addr). Either is
// followed from both sides:
//
//	gateways (every gwEventPoll): the other gateways' switchyard_sessions
//	  back at --sessions, their switchyard_sessions_resumed_total grown by
//	  the sessions the lost gateway held; per second of the event, the
//	  resumes they counted and the GOAWAYs the draining one sent
//	devices (loadgen's per-second rows, its JSON summary): the sessions
//	  that came back each second (WELCOME again), disconnects, errors;
//	  and --verify over the whole run (lost, duplicated, reordered, reset)
//
// The reconnect rate's target (drain only): the most devices back in one
// second is at most --reconnect-peak-target (2) times their mean over the
// reconnect period (from the first to the last second with any).

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
)

const (
	gwEventPoll   = 100 * time.Millisecond // how often the gateways are read during a gateway event
	gwEventWindow = 40 * time.Second       // a gateway event not settled by then is reported unsettled (drain window 15 s by default)
)

// gatewayEvent is what one gateway drain or kill did.
type gatewayEvent struct {
	Kind    string  `json:"kind"`    // "gateway-drain", "gateway-kill" or "storm"
	Gateway string  `json:"gateway"` // the process drained or killed ("all" in a storm)
	AtS     float64 `json:"at_s"`    // seconds after loadgen started
	// Held is the gateway's switchyard_sessions just before the event.
	Held float64 `json:"held"`
	// From the event, on the other gateways: their resumes grew by Held
	// (ResumedS), their sessions are back at --sessions (BackS; both one
	// poll late at most); the lost gateway's process exited.
	ResumedS  float64 `json:"resumed_s"`
	BackS     float64 `json:"back_s"`
	ExitS     float64 `json:"exit_s"`
	Unsettled bool    `json:"unsettled,omitempty"` // not settled within gwEventWindow
	// The other gateways' counters over the event.
	Resumed        float64 `json:"resumed"`         // switchyard_sessions_resumed_total
	ResumeRejected float64 `json:"resume_rejected"` // switchyard_resume_rejected_total: resumes answered as new sessions
	Disconnects    float64 `json:"disconnects"`     // switchyard_disconnects_total, all reasons
	Unavailable    float64 `json:"unavailable"`     // switchyard_errors_sent_total{code="503"}
	// Shed is switchyard_connections_rejected_total{reason="overload"}:
	// connections refused at accept with a retry hint because the gateway
	// was behind on handshakes; HandshakeTimeouts is
	// switchyard_handshake_results_total{result="408"}: connections
	// accepted and not handshaken in time (a storm's target is none).
	Shed              float64 `json:"shed"`
	HandshakeTimeouts float64 `json:"handshake_timeouts"`
	// Dropped is switchyard_frames_dropped_total by reason.
	Dropped map[string]float64 `json:"dropped,omitempty"`
	// Their backend links (switchyard_backend_links) before the event and
	// the fewest seen during it: a starved gateway's links time out.
	LinksBefore float64 `json:"links_before"`
	LinksMin    float64 `json:"links_min"`
	// Per second from the event (second i covers [i, i+1) s): resumes on
	// the other gateways and GOAWAYs sent by the lost one.
	GatewayResumes []float64 `json:"gateway_resumes_per_s"`
	GoAways        []float64 `json:"goaways_per_s"`
	// And, per second on the other gateways: connections accepted, their
	// disconnects (every reason), and the most connections seen waiting
	// in their kernel accept queues at once (the sum over them). A storm's
	// first seconds: the old connections closing while the new ones wait.
	GatewayAccepts     []float64 `json:"gateway_accepts_per_s,omitempty"`
	GatewayDisconnects []float64 `json:"gateway_disconnects_per_s,omitempty"`
	AcceptQueueMax     []float64 `json:"accept_queue_max_per_s,omitempty"`
	// From loadgen's per-second rows after the event: devices back
	// (WELCOME again) per row from the first row with any to the last,
	// their mean and most, the last such row's end from the event (an
	// upper bound, a second's resolution), disconnects and errors.
	DeviceReconnects []int64 `json:"device_reconnects_per_s"`
	ReconnectTotal   int64   `json:"reconnect_total"`
	ReconnectMean    float64 `json:"reconnect_mean"`
	ReconnectMax     int64   `json:"reconnect_max"`
	PeakRatio        float64 `json:"reconnect_peak_ratio"` // max / mean
	DeviceBackS      float64 `json:"device_back_s"`
	// The same over loadgen's connection attempts (reconnects, failed ones
	// included) from the first row with any to the last: the pace the
	// drain's GOAWAYs set, where devices back above is that pace as the
	// gateways and shards could answer it.
	Attempts     []int64 `json:"attempts_per_s"`
	AttemptMean  float64 `json:"attempt_mean"`
	AttemptMax   int64   `json:"attempt_max"`
	AttemptRatio float64 `json:"attempt_peak_ratio"` // max / mean
	// HELLOs read after their device had closed the connection, on every
	// gateway before the event (the ramp and the hold) and on the others
	// during it (switchyard_handshakes_abandoned_total).
	AbandonedBefore float64 `json:"handshakes_abandoned_before"`
	Abandoned       float64 `json:"handshakes_abandoned"`
	DeviceDisconn   int64   `json:"device_disconnects"`
	DeviceErrors    int64   `json:"device_errors"`
}

// gwReading is what a gateway event reads off the gateways' pages.
type gwReading struct {
	held       float64 // the lost gateways' sessions
	goaways    float64 // the lost gateways' GOAWAYs sent (0 once gone)
	sessions   float64 // the others' sessions
	resumed    float64
	rejected   float64
	disconnect float64
	// unavailable is the others' ERROR 503s sent, links their backend links.
	unavailable float64
	links       float64
	accepted    float64            // the others' connections accepted
	acceptQueue float64            // the others' kernel accept queues, summed
	abandoned   float64            // every gateway's, the lost one's too
	shed        float64            // the others' connections shed (overload)
	hsTimeouts  float64            // the others' handshake timeouts (408)
	dropped     map[string]float64 // the others' frames dropped, by reason
}

// readGateways sums the pages of every gateway but the lost ones (their
// indexes in pages), and the lost ones' sessions and GOAWAYs apart.
func readGateways(pages []map[string]float64, lost []int) gwReading {
	r := gwReading{dropped: map[string]float64{}}
	for i, m := range pages {
		r.abandoned += m["switchyard_handshakes_abandoned_total"]
		if slices.Contains(lost, i) {
			r.held += m["switchyard_sessions"]
			r.goaways += m["switchyard_goaways_sent_total"]
			continue
		}
		r.sessions += m["switchyard_sessions"]
		r.resumed += m["switchyard_sessions_resumed_total"]
		r.rejected += m["switchyard_resume_rejected_total"]
		r.unavailable += m[`switchyard_errors_sent_total{code="503"}`]
		r.shed += m[`switchyard_connections_rejected_total{reason="overload"}`]
		r.hsTimeouts += m[`switchyard_handshake_results_total{result="408"}`]
		r.links += m["switchyard_backend_links"]
		r.accepted += m["switchyard_connections_accepted_total"]
		r.acceptQueue += m["switchyard_accept_queue_length"]
		for k, v := range m {
			if strings.HasPrefix(k, "switchyard_disconnects_total") {
				r.disconnect += v
			}
			if reason, ok := strings.CutPrefix(k, `switchyard_frames_dropped_total{reason="`); ok {
				r.dropped[strings.TrimSuffix(reason, `"}`)] += v
			}
		}
	}
	return r
}

// lostGateways are the indexes of the last n gateways still running
// (fewer if fewer run).
func (cl *cluster) lostGateways(n int) []int {
	var lost []int
	for i := len(cl.gateways) - 1; i >= 0 && len(lost) < n; i-- {
		if !cl.gateways[i].exited() {
			lost = append(lost, i)
		}
	}
	return lost
}

// runGatewayEvent drains the last gateway still running, or kills the
// last --kill-gateways of them at once, and follows their devices until
// they are all back on the others; a storm cuts every device's
// connection at once (loadgen's SIGUSR1) and follows them until every
// session resumed, on any gateway.
func (cl *cluster) runGatewayEvent(ctx context.Context, c *config, kind string, start time.Time) gatewayEvent {
	ev := gatewayEvent{Kind: kind}
	storm := kind == "storm"
	var lost []int // a storm loses no gateway: every gateway is "the others"
	var gs []*proc
	if !storm {
		n := 1
		if kind == "gateway-kill" {
			n = max(1, c.KillGateways)
		}
		if lost = cl.lostGateways(n); len(lost) == 0 {
			ev.Gateway, ev.Unsettled = "none left", true
			return ev
		}
		var names []string
		for _, i := range lost {
			gs = append(gs, cl.gateways[i])
			names = append(names, cl.gateways[i].name)
		}
		ev.Gateway = strings.Join(names, ",")
	}
	base := readGateways(cl.gatewayPages(), lost)
	t0 := time.Now()
	switch kind {
	case "storm":
		base.held = base.sessions
		cl.loadgen.cmd.Process.Signal(syscall.SIGUSR1)
		ev.Gateway = "all"
	case "gateway-kill":
		for _, g := range gs {
			g.cmd.Process.Signal(syscall.SIGKILL)
		}
	default:
		gs[0].cmd.Process.Signal(syscall.SIGTERM)
	}
	ev.AtS, ev.Held = t0.Sub(start).Seconds(), base.held
	ev.AbandonedBefore = base.abandoned
	lastGoAways := base.goaways
	ev.LinksBefore, ev.LinksMin = base.links, base.links
	var r gwReading
	for {
		r = readGateways(cl.gatewayPages(), lost)
		ev.LinksMin = min(ev.LinksMin, r.links)
		el := time.Since(t0)
		sec := int(el / time.Second)
		growth(&ev.GatewayResumes, sec, r.resumed-base.resumed)
		growth(&ev.GatewayAccepts, sec, r.accepted-base.accepted)
		growth(&ev.GatewayDisconnects, sec, r.disconnect-base.disconnect)
		bucket(&ev.AcceptQueueMax, sec, 0)
		ev.AcceptQueueMax[sec] = max(ev.AcceptQueueMax[sec], r.acceptQueue)
		if r.goaways > lastGoAways {
			bucket(&ev.GoAways, sec, r.goaways-lastGoAways)
			lastGoAways = r.goaways
		}
		if ev.ResumedS == 0 && r.resumed-base.resumed >= base.held {
			ev.ResumedS = el.Seconds()
		}
		if ev.BackS == 0 && r.sessions >= float64(c.Sessions) {
			ev.BackS = el.Seconds()
		}
		if ev.ResumedS > 0 && ev.BackS > 0 && allExited(gs) {
			break
		}
		if el > gwEventWindow || ctx.Err() != nil {
			ev.Unsettled = true
			break
		}
		select {
		case <-time.After(gwEventPoll):
		case <-ctx.Done():
		}
	}
	if len(gs) > 0 && allExited(gs) {
		for _, g := range gs {
			ev.ExitS = max(ev.ExitS, g.ended.Sub(t0).Seconds())
		}
	}
	ev.Resumed, ev.ResumeRejected, ev.Disconnects = r.resumed-base.resumed, r.rejected-base.rejected, r.disconnect-base.disconnect
	ev.Unavailable = r.unavailable - base.unavailable
	ev.Shed, ev.HandshakeTimeouts = r.shed-base.shed, r.hsTimeouts-base.hsTimeouts
	// The lost gateway's page is gone after it exits: count the others'.
	ev.Abandoned = max(0, r.abandoned-base.abandoned)
	for k, v := range r.dropped {
		if d := v - base.dropped[k]; d != 0 {
			if ev.Dropped == nil {
				ev.Dropped = map[string]float64{}
			}
			ev.Dropped[k] = d
		}
	}
	return ev
}

// allExited reports whether every process of ps has exited (none: true).
func allExited(ps []*proc) bool {
	for _, p := range ps {
		if !p.exited() {
			return false
		}
	}
	return true
}

// growth puts into second i what a counter that stands at total since the
// event gained beyond the seconds *b already holds.
func growth(b *[]float64, i int, total float64) {
	if d := total - sum(*b); d > 0 {
		bucket(b, i, d)
	}
}

// bucket adds v to (*b)[i], growing *b as needed.
func bucket(b *[]float64, i int, v float64) {
	for len(*b) <= i {
		*b = append(*b, 0)
	}
	(*b)[i] += v
}

func sum(b []float64) float64 {
	var n float64
	for _, v := range b {
		n += v
	}
	return n
}

// loadgenSecond is one of loadgen's per-second rows.
type loadgenSecond struct {
	T           float64 `json:"t_s"`
	Up          int64   `json:"up"`
	Reconnected int64   `json:"reconnected"`
	Reconnects  int64   `json:"reconnects"` // attempts, failed ones included
	Disconnects int64   `json:"disconnects"`
	Errors      int64   `json:"errors"`
}

// devices fills ev's device-side figures from loadgen's rows: those that
// end after the event and begin before two seconds after it settled (or
// gwEventWindow after it, unsettled): a device reads its WELCOME after
// the gateway counted it, and loadgen's clock starts a little after this
// one. Each row covers the second before its T.
func (ev *gatewayEvent) devices(rows []loadgenSecond) {
	end := ev.AtS + gwEventWindow.Seconds()
	if !ev.Unsettled {
		end = ev.AtS + max(ev.ResumedS, ev.BackS, ev.ExitS) + 2
	}
	var in []loadgenSecond
	for _, r := range rows {
		if r.T > ev.AtS && r.T-1 < end {
			in = append(in, r)
		}
	}
	for _, r := range in {
		ev.DeviceDisconn += r.Disconnects
		ev.DeviceErrors += r.Errors
	}
	ev.Attempts, ev.AttemptMax, ev.AttemptMean, ev.AttemptRatio, _ =
		period(in, func(r loadgenSecond) int64 { return r.Reconnects })
	var last int
	ev.DeviceReconnects, ev.ReconnectMax, ev.ReconnectMean, ev.PeakRatio, last =
		period(in, func(r loadgenSecond) int64 { return r.Reconnected })
	for _, n := range ev.DeviceReconnects {
		ev.ReconnectTotal += n
	}
	if last >= 0 {
		ev.DeviceBackS = in[last].T - ev.AtS
	}
}

// period takes one count of the rows from the first with any to the
// last: those counts, their most, mean and most ÷ mean, and the last
// row's index (-1 when no row has any).
func period(in []loadgenSecond, count func(loadgenSecond) int64) (vals []int64, most int64, mean, ratio float64, last int) {
	first, last := -1, -1
	for i, r := range in {
		if count(r) > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return nil, 0, 0, 0, -1
	}
	var total int64
	for _, r := range in[first : last+1] {
		vals = append(vals, count(r))
		total += count(r)
		most = max(most, count(r))
	}
	mean = float64(total) / float64(len(vals))
	return vals, most, mean, float64(most) / mean, last
}

// gatewayDevices fills every gateway event's device-side figures.
func (s *summary) gatewayDevices() {
	if s.Loadgen == nil {
		return
	}
	for i := range s.GatewayEvents {
		s.GatewayEvents[i].devices(s.Loadgen.Seconds)
	}
}

// gatewayVerdict is the gateway events' part of the verdict.
func (s *summary) gatewayVerdict(c *config) []error {
	var errs []error
	for _, ev := range s.GatewayEvents {
		name := ev.Kind + " of " + ev.Gateway
		switch {
		case ev.Unsettled:
			errs = append(errs, fmt.Errorf("%s: not every session back within %v (resumed %.0f of %.0f after %.2f s; sessions back after %.2f s; exited after %.2f s)",
				name, gwEventWindow, ev.Resumed, ev.Held, ev.ResumedS, ev.BackS, ev.ExitS))
		case ev.Held == 0:
			errs = append(errs, fmt.Errorf("%s: it held no session", name))
		}
		if ev.ResumeRejected > 0 {
			errs = append(errs, fmt.Errorf("%s: %.0f resumes answered as new sessions", name, ev.ResumeRejected))
		}
		if ev.Kind == "storm" && ev.HandshakeTimeouts > 0 {
			errs = append(errs, fmt.Errorf("%s: %.0f handshake timeouts (408) on the gateways (target: none; the gateways shed %.0f)", name, ev.HandshakeTimeouts, ev.Shed))
		}
		if ev.Kind == "gateway-drain" && ev.PeakRatio > c.PeakTarget {
			errs = append(errs, fmt.Errorf("%s: %d devices back in one second, %.2f × the mean %.0f/s (target %g ×)",
				name, ev.ReconnectMax, ev.PeakRatio, ev.ReconnectMean, c.PeakTarget))
		}
	}
	if want := c.gatewayEvents(); len(s.GatewayEvents) < want {
		errs = append(errs, fmt.Errorf("%d of %d gateway events ran", len(s.GatewayEvents), want))
	}
	if c.StormAfter > 0 && s.Loadgen != nil && s.Loadgen.Errors["timeout"] > 0 {
		// loadgen gives a connection attempt up after 10 s without its
		// WELCOME: a device of a storm that waited that long
		errs = append(errs, fmt.Errorf("storm: %d connection attempts given up (loadgen's 10 s connect and handshake deadline)", s.Loadgen.Errors["timeout"]))
	}
	return errs
}

// gatewayEvents is how many gateway events the flags plan.
func (c *config) gatewayEvents() int {
	n := 0
	for _, d := range []time.Duration{c.GwDrainAfter, c.GwKillAfter, c.StormAfter} {
		if d > 0 {
			n++
		}
	}
	return n
}

// expectedErrors are the loadgen errors a lost gateway causes: its
// connections end (EOF after GOAWAY, a reset when killed) and a device
// may try it once more before the next address.
var expectedErrors = map[string]bool{"eof": true, "conn_reset": true, "conn_refused": true, "broken_pipe": true}

// unexpectedErrors are loadgen's errors other than expectedErrors; in a
// storm (shed) also other than ERROR 503, the gateways shedding what they
// cannot handshake in time.
func unexpectedErrors(errs map[string]int64, shed bool) map[string]int64 {
	out := map[string]int64{}
	for k, v := range errs {
		if !expectedErrors[k] && !(shed && k == "503") {
			out[k] = v
		}
	}
	return out
}

// gatewayText is the gateway events' part of the human summary.
func (s *summary) gatewayText(b *strings.Builder) {
	for _, ev := range s.GatewayEvents {
		fmt.Fprintf(b, "  %s of %s at t=%.1f s, holding %.0f sessions: resumed on the others after %.2f s, sessions back after %.2f s, process exited after %.2f s\n",
			ev.Kind, ev.Gateway, ev.AtS, ev.Held, ev.ResumedS, ev.BackS, ev.ExitS)
		fmt.Fprintf(b, "    others: %.0f resumes, %.0f resumes as new sessions, %.0f disconnects, %.0f ERROR 503 sent (%.0f shed with a retry hint), %.0f handshake timeouts, frames dropped %v, backend links %.0f → fewest %.0f; resumes per second %v; GOAWAYs per second %v\n",
			ev.Resumed, ev.ResumeRejected, ev.Disconnects, ev.Unavailable, ev.Shed, ev.HandshakeTimeouts, ev.Dropped, ev.LinksBefore, ev.LinksMin, ints(ev.GatewayResumes), ints(ev.GoAways))
		fmt.Fprintf(b, "    devices: back per second %v (total %d, mean %.0f/s, max %d, max/mean %.2f), last back within %.1f s; %d disconnects, %d errors\n",
			ev.DeviceReconnects, ev.ReconnectTotal, ev.ReconnectMean, ev.ReconnectMax, ev.PeakRatio, ev.DeviceBackS, ev.DeviceDisconn, ev.DeviceErrors)
		fmt.Fprintf(b, "    devices: connection attempts per second %v (mean %.0f/s, max %d, max/mean %.2f); stale HELLOs dropped %.0f before the event, %.0f during it\n",
			ev.Attempts, ev.AttemptMean, ev.AttemptMax, ev.AttemptRatio, ev.AbandonedBefore, ev.Abandoned)
		if len(ev.GatewayAccepts)+len(ev.GatewayDisconnects) > 0 {
			fmt.Fprintf(b, "    others per second: accepted %v; disconnects %v; most waiting in the accept queues %v\n",
				ints(ev.GatewayAccepts), ints(ev.GatewayDisconnects), ints(ev.AcceptQueueMax))
		}
	}
}

func ints(fs []float64) []int64 {
	out := make([]int64, len(fs))
	for i, f := range fs {
		out[i] = int64(math.Round(f))
	}
	return out
}

// logGatewayEvent prints one line when a gateway event settled.
func logGatewayEvent(ev gatewayEvent) {
	fmt.Fprintf(os.Stderr, "scale: %s of %s at t=%.1fs: %.0f sessions resumed elsewhere after %.2fs, back after %.2fs, exited after %.2fs\n",
		ev.Kind, ev.Gateway, ev.AtS, ev.Resumed, ev.ResumedS, ev.BackS, ev.ExitS)
}
