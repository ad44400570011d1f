package main

import (
	"maps"
	"time"
)

// summary is the JSON report of a run.
type summary struct {
	Addrs       []string `json:"addrs"`
	Sessions    int      `json:"sessions"`
	Procs       int      `json:"procs"`
	SrcSpread   int      `json:"src_spread"`
	Mode        string   `json:"mode"` // "open", "closed" or "idle"
	Rate        float64  `json:"rate_per_session,omitempty"`
	Window      int      `json:"window,omitempty"`
	Payload     int      `json:"payload"`
	Reliable    bool     `json:"reliable"`
	WallS       float64  `json:"wall_s"`
	LoadS       float64  `json:"load_s"` // from the start to the end of sending
	Sent        int64    `json:"frames_sent"`
	Received    int64    `json:"frames_received"`
	SentPerSec  float64  `json:"sent_per_sec"`
	RecvPerSec  float64  `json:"received_per_sec"`
	Handshakes  int64    `json:"handshakes"`
	Disconnects int64    `json:"disconnects"`
	Reconnects  int64    `json:"reconnects"`
	// DisconnectCauses splits Disconnects by cause: "goaway" (after a
	// GOAWAY), "error_<code>" (after an ERROR), "eof" or "reset" (the
	// gateway closed or reset it without either), "timeout", … (see
	// incidents.go); HandshakeFailures does the same for connections that
	// ended before WELCOME.
	DisconnectCauses  map[string]int64 `json:"disconnect_causes"`
	HandshakeFailures map[string]int64 `json:"handshake_failures"`
	Errors            map[string]int64 `json:"errors"`
	Latency           latency          `json:"latency_us"`
	Counters          map[string]int64 `json:"counters"`
	Verify            *verifyReport    `json:"verify,omitempty"`
	// Seconds has a row per progress line (about one a second): what
	// connections did in that second, to see reconnect bursts.
	Seconds []second `json:"seconds,omitempty"`
}

// second is what the sessions' connections did in the second before T.
type second struct {
	T           float64 `json:"t_s"` // since the start
	Up          int64   `json:"up"`  // sessions up at T
	Reconnected int64   `json:"reconnected"`
	Reconnects  int64   `json:"reconnects"` // attempts, failed ones included
	Disconnects int64   `json:"disconnects"`
	GoAway      int64   `json:"goaway"`
	Errors      int64   `json:"errors"`
}

func newSecond(t time.Duration, up int64, s *Stats) second {
	return second{T: t.Seconds(), Up: up, Reconnected: s.C[cReconnected], Reconnects: s.C[cReconnects],
		Disconnects: s.C[cDisconnects], GoAway: s.C[cGoAway], Errors: s.errorTotal()}
}

type latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

type verifyReport struct {
	OK           bool  `json:"ok"`
	UpLost       int64 `json:"up_lost"`
	UpDup        int64 `json:"up_dup"`
	UpReorder    int64 `json:"up_reorder"`
	UpReset      int64 `json:"up_reset"` // counter backend: state reset (count back at 1)
	UpTwice      int64 `json:"up_twice"` // counter backend: counted beyond the frames sent (handled twice)
	DownLost     int64 `json:"down_lost"`
	DownDup      int64 `json:"down_dup"`
	DownReorder  int64 `json:"down_reorder"`
	Unacked      int64 `json:"unacked"`
	Unanswered   int64 `json:"unanswered"`
	ResumeFailed int64 `json:"resume_failed"`
	// ResetUnanswered is the DATA that never got a reply because its
	// session could not be resumed (part of a state reset).
	ResetUnanswered int64 `json:"reset_unanswered"`
	AckRegress      int64 `json:"ack_regress"`
}

func summarize(cfg *config, s *Stats, procs int, src sources, wall, load time.Duration) *summary {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	r := &summary{Addrs: cfg.Addrs, Sessions: cfg.Sessions, Procs: procs, SrcSpread: src.n,
		Payload: cfg.Payload, Reliable: cfg.Reliable, WallS: wall.Seconds(), LoadS: load.Seconds(),
		Sent: s.C[cSent], Received: s.C[cReceived], Handshakes: s.C[cHandshakes],
		Disconnects: s.C[cDisconnects], Reconnects: s.C[cReconnects],
		DisconnectCauses: maps.Clone(s.Disc), HandshakeFailures: maps.Clone(s.HS),
		Errors: maps.Clone(s.Err), Counters: maps.Clone(s.C)}
	if cfg.Idle {
		r.Mode = "idle"
	} else if cfg.Rate > 0 {
		r.Mode, r.Rate = "open", cfg.Rate
	} else {
		r.Mode, r.Window = "closed", cfg.Window
	}
	if load > 0 {
		r.SentPerSec = float64(r.Sent) / load.Seconds()
		r.RecvPerSec = float64(r.Received) / load.Seconds()
	}
	r.Latency = latency{Count: s.Lat.TotalCount(), P50: us(s.Lat.ValueAtQuantile(50)),
		P90: us(s.Lat.ValueAtQuantile(90)), P99: us(s.Lat.ValueAtQuantile(99)),
		P999: us(s.Lat.ValueAtQuantile(99.9)), Max: us(s.Lat.Max()), Mean: s.Lat.Mean() / 1e3}
	if cfg.Verify {
		r.Verify = &verifyReport{OK: s.violations() == 0 && s.C[cHandshakes] > 0,
			UpLost: s.C[cUpLost], UpDup: s.C[cUpDup], UpReorder: s.C[cUpReorder], UpReset: s.C[cUpReset], UpTwice: s.C[cUpTwice],
			DownLost: s.C[cDownLost], DownDup: s.C[cDownDup], DownReorder: s.C[cDownReorder],
			Unacked: s.C[cUnacked], Unanswered: s.C[cUnanswered], ResumeFailed: s.C[cResumeFailed],
			ResetUnanswered: s.C[cResetUnanswered], AckRegress: s.C[cAckRegress]}
	}
	return r
}
