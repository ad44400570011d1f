package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchyard-gw/switchyard/internal/procstat"
)

// summary is the JSON report of a run.
type summary struct {
	Config  config        `json:"config"`
	Date    string        `json:"date"`
	Host    procstat.Host `json:"host"`
	Before  sample        `json:"before"`  // cluster up, no sessions
	First   sample        `json:"first"`   // the first sample with every session up
	Held    sample        `json:"held"`    // the last one before loadgen stops them
	Samples []sample      `json:"samples"` // every reading, t from loadgen's start
	UpAfter float64       `json:"up_after_s"`
	// MaxSessions is the most sessions seen up at once; StoppedBy says why
	// the load was stopped early, if it was.
	MaxSessions float64        `json:"max_sessions"`
	StoppedBy   string         `json:"stopped_by,omitempty"`
	Loadgen     *loadgenReport `json:"loadgen"`
	Events      []moveEvent    `json:"events,omitempty"` // --drain-shard-after, --add-shard-after
	// GatewayEvents: --drain-gateway-after, --kill-gateway-after.
	GatewayEvents []gatewayEvent `json:"gateway_events,omitempty"`

	// Derived figures (bytes per session, cores, sessions/s).
	GatewayBytesPerSessionUp float64 `json:"gateway_bytes_per_session_up"` // RSS as soon as all are up
	GatewayBytesPerSession   float64 `json:"gateway_bytes_per_session"`    // at the end of the hold (more garbage between GCs)
	BackendBytesPerSession   float64 `json:"backend_bytes_per_session"`
	LoadgenBytesPerSession   float64 `json:"loadgen_bytes_per_session"`
	KernelBytesPerSocket     float64 `json:"kernel_bytes_per_socket"` // slab + TCP buffers over both ends' sockets
	MemUsedPerSession        float64 `json:"mem_used_per_session"`    // the whole box, both ends
	ConnectPerSec            float64 `json:"connect_per_sec"`         // 10 % → 90 % of the sessions
	GatewayCoresHeld         float64 `json:"gateway_cores_held"`      // while every session was up
	LoadgenCoresHeld         float64 `json:"loadgen_cores_held"`
	UnexpectedDisconnects    float64 `json:"unexpected_disconnects"`  // gateways' counters from the start of the load to the end of the hold
	RampTimeouts             float64 `json:"ramp_handshake_timeouts"` // of which handshake timeouts (never sessions)
	HoldDisconnects          float64 `json:"hold_disconnects"`        // from the first sample with all up to the end of the hold
	ListenDrops              float64 `json:"listen_drops"`
	Pass                     bool    `json:"pass"`
}

// loadgenReport is the part of loadgen's JSON summary the verdict needs.
type loadgenReport struct {
	Sessions    int              `json:"sessions"`
	Procs       int              `json:"procs"`
	SrcSpread   int              `json:"src_spread"`
	Handshakes  int64            `json:"handshakes"`
	Disconnects int64            `json:"disconnects"`
	Reconnects  int64            `json:"reconnects"`
	Errors      map[string]int64 `json:"errors"`
	Counters    map[string]int64 `json:"counters"`
	Sent        int64            `json:"frames_sent"`
	Received    int64            `json:"frames_received"`
	Latency     struct {
		P50  float64 `json:"p50"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p999"`
		Max  float64 `json:"max"`
	} `json:"latency_us"`
	Verify  *verifyReport   `json:"verify"`  // with --rate
	Seconds []loadgenSecond `json:"seconds"` // a row per progress line
}

// verifyReport is loadgen's --verify summary.
type verifyReport struct {
	OK           bool  `json:"ok"`
	UpLost       int64 `json:"up_lost"`
	UpDup        int64 `json:"up_dup"`
	UpReorder    int64 `json:"up_reorder"`
	UpReset      int64 `json:"up_reset"`
	DownLost     int64 `json:"down_lost"`
	DownDup      int64 `json:"down_dup"`
	DownReorder  int64 `json:"down_reorder"`
	Unacked      int64 `json:"unacked"`
	Unanswered   int64 `json:"unanswered"`
	ResumeFailed int64 `json:"resume_failed"`
	AckRegress   int64 `json:"ack_regress"`
}

// finish reads loadgen's report and derives the figures.
func (s *summary) finish(c *config, cl *cluster) {
	if b, err := os.ReadFile(filepath.Join(cl.dir, "loadgen.json")); err == nil {
		var r loadgenReport
		if json.Unmarshal(b, &r) == nil {
			s.Loadgen = &r
		}
	}
	s.eventLatency(cl.dir)
	s.gatewayDevices()
	n := float64(c.Sessions)
	// loadgen stops its sessions ramp + hold after it started; samples
	// from the last two seconds before may already count those closes.
	holdEnd := n/c.Ramp + c.Hold.Seconds() - 2
	var first *sample // the first sample with every session up
	for i := range s.Samples {
		if s.Samples[i].Sessions >= n && s.Samples[i].T <= holdEnd {
			if first == nil {
				first = &s.Samples[i]
			}
			s.Held = s.Samples[i]
		}
	}
	if first == nil {
		// Not all came up (the push toward a million stops where the box
		// does): the figures are taken at the most sessions seen.
		for i := range s.Samples {
			if first == nil || s.Samples[i].Sessions > first.Sessions {
				first = &s.Samples[i]
			}
		}
		if first == nil || first.Sessions == 0 {
			return
		}
		s.Held, n = *first, first.Sessions
	}
	h, b := s.Held, s.Before
	s.First = *first
	s.GatewayBytesPerSessionUp = (first.GatewayRSS - b.GatewayRSS) / n
	s.GatewayBytesPerSession = (h.GatewayRSS - b.GatewayRSS) / n
	s.BackendBytesPerSession = (h.BackendRSS - b.BackendRSS) / n
	s.LoadgenBytesPerSession = h.LoadgenRSS / n
	s.KernelBytesPerSocket = (h.Slab + h.TCPMem - b.Slab - b.TCPMem) / (2 * n)
	s.MemUsedPerSession = (h.MemUsed - b.MemUsed) / n
	s.UnexpectedDisconnects = h.Disconnects - b.Disconnects
	s.RampTimeouts = h.HandshakeTimeouts - b.HandshakeTimeouts
	s.HoldDisconnects = h.Disconnects - first.Disconnects
	s.ListenDrops = h.ListenDrops - b.ListenDrops
	s.GatewayCoresHeld = cores(first.GatewayCPU, h.GatewayCPU, h.T-first.T)
	s.LoadgenCoresHeld = cores(first.LoadgenCPU, h.LoadgenCPU, h.T-first.T)
	s.ConnectPerSec = connectRate(s.Samples, n)
}

// connectRate is the sessions/s between the samples where 10 % and 90 % of
// n were up, each crossing time interpolated between two samples.
func connectRate(ss []sample, n float64) float64 {
	cross := func(level float64) (float64, bool) {
		prev := sample{}
		for _, s := range ss {
			if s.Sessions >= level {
				if s.Sessions == prev.Sessions {
					return s.T, true
				}
				return prev.T + (level-prev.Sessions)/(s.Sessions-prev.Sessions)*(s.T-prev.T), true
			}
			prev = s
		}
		return 0, false
	}
	t10, ok1 := cross(0.1 * n)
	t90, ok2 := cross(0.9 * n)
	if !ok1 || !ok2 || t90 <= t10 {
		return 0
	}
	return 0.8 * n / (t90 - t10)
}

// verdict is nil when every session came up and none was lost.
func (s *summary) verdict(c *config) error {
	var errs []error
	if s.StoppedBy != "" {
		errs = append(errs, fmt.Errorf("load stopped early: %s", s.StoppedBy))
	}
	if s.UpAfter == 0 {
		errs = append(errs, fmt.Errorf("never saw all %d sessions up at once", c.Sessions))
	}
	// Losing a gateway disconnects its devices on purpose: its own
	// verdict (gatewayVerdict) replaces the disconnect checks.
	lossy := c.gatewayEvents() > 0
	if s.UnexpectedDisconnects != 0 && !lossy {
		errs = append(errs, fmt.Errorf("gateways counted %.0f disconnects while the sessions were held", s.UnexpectedDisconnects))
	}
	if r := s.Loadgen; r == nil {
		errs = append(errs, errors.New("no loadgen summary"))
	} else {
		if r.Handshakes < int64(c.Sessions) {
			errs = append(errs, fmt.Errorf("loadgen: %d handshakes of %d sessions", r.Handshakes, c.Sessions))
		}
		if (r.Disconnects != 0 || r.Reconnects != 0) && !lossy {
			errs = append(errs, fmt.Errorf("loadgen: %d disconnects, %d reconnects", r.Disconnects, r.Reconnects))
		}
		if e := r.Errors; len(e) != 0 && !lossy {
			errs = append(errs, fmt.Errorf("loadgen: errors %v", e))
		} else if e := unexpectedErrors(e, c.StormAfter > 0); len(e) != 0 {
			errs = append(errs, fmt.Errorf("loadgen: errors %v", e))
		}
		if c.Rate > 0 && (r.Verify == nil || !r.Verify.OK) {
			errs = append(errs, fmt.Errorf("loadgen --verify: violations %+v", r.Verify))
		}
	}
	errs = append(errs, s.eventVerdict(c)...)
	errs = append(errs, s.gatewayVerdict(c)...)
	err := errors.Join(errs...)
	s.Pass = err == nil
	return err
}

// text is the human summary printed at the end.
func (s *summary) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scale: %d sessions, %d gateways, %d shards, hold %v, heartbeat %d s\n",
		s.Config.Sessions, s.Config.Gateways, s.Config.Backends, s.Config.Hold, s.Config.Heartbeat)
	if s.StoppedBy != "" {
		fmt.Fprintf(&b, "  STOPPED: %s\n", s.StoppedBy)
	}
	fmt.Fprintf(&b, "  most sessions up at once: %.0f\n", s.MaxSessions)
	fmt.Fprintf(&b, "  all up after %.0f s; connect rate %.0f sessions/s (10–90 %%); listen drops %.0f\n",
		s.UpAfter, s.ConnectPerSec, s.ListenDrops)
	fmt.Fprintf(&b, "  per session: gateway RSS %.0f B when all were up, %.0f B at the end; shards %.0f B, loadgen %.0f B; kernel %.0f B per socket; box %.0f B (both ends)\n",
		s.GatewayBytesPerSessionUp, s.GatewayBytesPerSession, s.BackendBytesPerSession, s.LoadgenBytesPerSession, s.KernelBytesPerSocket, s.MemUsedPerSession)
	fmt.Fprintf(&b, "  held: gateways %.2f cores, loadgen %.2f cores\n", s.GatewayCoresHeld, s.LoadgenCoresHeld)
	if r := s.Loadgen; r != nil {
		fmt.Fprintf(&b, "  loadgen: %d processes, %d source addresses, %d handshakes, %d disconnects, %d reconnects, errors %v, pings %d\n",
			r.Procs, r.SrcSpread, r.Handshakes, r.Disconnects, r.Reconnects, r.Errors, r.Counters["pings"])
		if v := r.Verify; v != nil {
			fmt.Fprintf(&b, "  loadgen --verify: ok %v; %d frames sent, %d replies; latency p50 %.1f ms, p99 %.1f ms, max %.1f ms; upstream lost %d dup %d reordered %d reset %d; downstream lost %d dup %d reordered %d; unacked %d unanswered %d resume failed %d; %d replies named a new shard\n",
				v.OK, r.Sent, r.Received, r.Latency.P50/1e3, r.Latency.P99/1e3, r.Latency.Max/1e3, v.UpLost, v.UpDup, v.UpReorder, v.UpReset,
				v.DownLost, v.DownDup, v.DownReorder, v.Unacked, v.Unanswered, v.ResumeFailed, r.Counters["shard_changes"])
		}
	}
	s.eventText(&b)
	s.gatewayText(&b)
	fmt.Fprintf(&b, "  unexpected disconnects at the gateways: %.0f (%.0f handshake timeouts; %.0f once all were up); pass: %v\n",
		s.UnexpectedDisconnects, s.RampTimeouts, s.HoldDisconnects, s.Pass)
	return b.String()
}
