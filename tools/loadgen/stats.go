package main

import (
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histogram range in nanoseconds: 1 µs … 60 s, 3 significant digits.
const histMin, histMax, histDigits = 1000, 60_000_000_000, 3

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// Counter names.
const (
	cSent         = "sent"          // DATA frames written (first sends)
	cResent       = "resent"        // reliable DATA written again: after a resume, or --resend without an ACK
	cResendLate   = "resend_late"   // go-backs after --resend without an ACK
	cReceived     = "received"      // DATA frames received
	cAcksIn       = "acks_in"       // ACK frames received
	cAcksOut      = "acks_out"      // ACK frames sent (reliable downstream DATA)
	cPings        = "pings"         // PING sent
	cPongs        = "pongs"         // PONG received
	cConnects     = "connects"      // connection attempts
	cHandshakes   = "handshakes"    // WELCOME received
	cDisconnects  = "disconnects"   // an established session lost its connection
	cReconnects   = "reconnects"    // connection attempts after the first
	cReconnected  = "reconnected"   // WELCOME again for a session that was up (resumed or not)
	cGoAway       = "goaway"        // GOAWAY received
	cStormCuts    = "storm_cuts"    // connections cut on SIGUSR1 (a reconnect storm)
	cResumeFailed = "resume_failed" // a reconnect that did not resume its session
	cUpLost       = "up_lost"
	cUpDup        = "up_dup"
	cUpReorder    = "up_reorder"
	cUpReset      = "up_reset"      // counter backend: the count went back to 1 (state lost)
	cUpTwice      = "up_twice"      // counter backend: counted beyond the frames sent (handled twice)
	cShardChanges = "shard_changes" // counter backend: replies started naming another shard (a move)
	cDownLost     = "down_lost"
	cDownDup      = "down_dup"
	cDownReorder  = "down_reorder"
	cUnacked      = "unacked"    // reliable upstream DATA without ACK at the end
	cUnanswered   = "unanswered" // DATA without a reply at the end
	// DATA without a reply when the session could not be resumed (its
	// replies will never come: the session that would send them is gone)
	cResetUnanswered = "reset_unanswered"
	cAckRegress      = "ack_regress"
)

// Stats are counters, errors by kind and a latency histogram. They merge,
// and travel from a child process to its parent as JSON.
type Stats struct {
	C   map[string]int64 `json:"c"`
	Err map[string]int64 `json:"err"`
	// Disc counts established sessions' disconnects by cause, HS the
	// connections that ended before WELCOME by cause (incidents.go).
	Disc map[string]int64        `json:"disc,omitempty"`
	HS   map[string]int64        `json:"hs,omitempty"`
	Lat  *hdrhistogram.Histogram `json:"-"`
	// LatSnap carries Lat in JSON.
	LatSnap *hdrhistogram.Snapshot `json:"lat,omitempty"`
}

func newStats() *Stats {
	return &Stats{C: map[string]int64{}, Err: map[string]int64{}, Disc: map[string]int64{}, HS: map[string]int64{}, Lat: newHist()}
}

func (s *Stats) disc(cause string) { s.Disc[cause]++ }

func (s *Stats) handshakeFailed(cause string) { s.HS[cause]++ }

func (s *Stats) add(k string, n int64) { s.C[k] += n }

func (s *Stats) err(k string) { s.Err[k]++ }

// merge adds o into s.
func (s *Stats) merge(o *Stats) {
	for k, v := range o.C {
		s.C[k] += v
	}
	for k, v := range o.Err {
		s.Err[k] += v
	}
	for k, v := range o.Disc {
		s.Disc[k] += v
	}
	for k, v := range o.HS {
		s.HS[k] += v
	}
	if o.Lat != nil {
		s.Lat.Merge(o.Lat)
	}
}

func (s *Stats) reset() {
	clear(s.C)
	clear(s.Err)
	clear(s.Disc)
	clear(s.HS)
	s.Lat.Reset()
}

// wire prepares s for JSON. An empty histogram is left out: exported it
// is tens of thousands of zeros, and a parent decoding one a second from
// each of 53 children (the million-session run, --idle: no echoes) spent
// a seventh of a core on them.
func (s *Stats) wire() *Stats {
	s.LatSnap = nil
	if s.Lat.TotalCount() > 0 {
		s.LatSnap = s.Lat.Export()
	}
	return s
}

// unwire restores Lat after JSON.
func (s *Stats) unwire() {
	if s.C == nil {
		s.C = map[string]int64{}
	}
	if s.Err == nil {
		s.Err = map[string]int64{}
	}
	if s.Disc == nil {
		s.Disc = map[string]int64{}
	}
	if s.HS == nil {
		s.HS = map[string]int64{}
	}
	s.Lat = nil // nothing to merge (merge skips it)
	if s.LatSnap != nil {
		s.Lat = hdrhistogram.Import(s.LatSnap)
		s.LatSnap = nil
	}
}

// errorTotal is the number of errors of every kind.
func (s *Stats) errorTotal() int64 {
	var n int64
	for _, v := range s.Err {
		n += v
	}
	return n
}

// violations is the number of --verify violations.
func (s *Stats) violations() int64 {
	var n int64
	for _, k := range []string{cUpLost, cUpDup, cUpReorder, cUpReset, cUpTwice, cDownLost, cDownDup, cDownReorder,
		cUnacked, cUnanswered, cResumeFailed, cResetUnanswered, cAckRegress} {
		n += s.C[k]
	}
	return n
}

// agg collects the stats of one process's workers (or of the children):
// the total and the interval since the last progress line.
type agg struct {
	mu    sync.Mutex
	total *Stats
	ivl   *Stats
	up    map[int]int64 // sessions up, by source (worker or child)
}

func newAgg() *agg { return &agg{total: newStats(), ivl: newStats(), up: map[int]int64{}} }

// add merges s into the total and the interval.
func (a *agg) add(s *Stats) {
	a.mu.Lock()
	a.total.merge(s)
	a.ivl.merge(s)
	a.mu.Unlock()
}

func (a *agg) setUp(src int, n int64) {
	a.mu.Lock()
	a.up[src] = n
	a.mu.Unlock()
}

// interval returns the stats since the last call and the sessions up.
func (a *agg) interval() (*Stats, int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.ivl
	a.ivl = newStats()
	var up int64
	for _, n := range a.up {
		up += n
	}
	return s, up
}
