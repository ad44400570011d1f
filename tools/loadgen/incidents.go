package main

import (
	"encoding/json"
	"os"
	"strconv"
	"time"
)

// Incidents: with --incidents FILE every connection that ended (after
// the TCP connect succeeded) and every --verify violation is one JSON
// line, stamped with the wall clock, the gateway address and the device,
// so that a tool that changed the cluster during the run (tools/chaos)
// can tell which of its events, if any, explains each:
//
//	{"t":1764790000123,"what":"disconnect","cause":"eof","addr":"127.0.0.1:20001","id":"lg-1-7"}
//	{"t":1764790000456,"what":"up_reset","n":1,"addr":"127.0.0.1:20002","id":"lg-1-7"}
//
// what is "disconnect" (an established session's connection ended),
// "handshake" (a connection ended before WELCOME) or a violation counter
// (up_lost, up_dup, up_reorder, up_reset, up_twice, down_lost, down_dup,
// down_reorder, resume_failed, reset_unanswered, unacked, unanswered,
// ack_regress). n is the count (a lost run of frames is one line; a late
// frame that turns a lost one into a reordered one is up_lost -1 and
// up_reorder 1). Each process (children too) appends to the file with
// O_APPEND, one write per batch of whole lines.

// Disconnect causes: how a connection ended.
const (
	causeGoAway = "goaway" // after a GOAWAY (the device follows it)
	causeEOF    = "eof"    // the gateway closed it without GOAWAY or ERROR
	causeReset  = "reset"  // connection reset without GOAWAY or ERROR
	causeStorm  = "storm"  // cut by loadgen itself on SIGUSR1 (a reconnect storm)
	// Otherwise: "error_<code>" after an ERROR frame, "timeout" (connect
	// or handshake), "bad_frame", or another errno's name.
)

// discName is the cause for a connection that ended with err.
func discName(err error) string {
	switch errName(err) {
	case "conn_reset", "broken_pipe":
		return causeReset
	case "conn_refused":
		return "refused"
	}
	return errName(err)
}

// incident is one line of the incident log.
type incident struct {
	T     int64  `json:"t"` // unix milliseconds
	What  string `json:"what"`
	Cause string `json:"cause,omitempty"`
	N     int64  `json:"n,omitempty"`
	Addr  string `json:"addr"`
	ID    string `json:"id"`
}

// incidentLog is one worker's buffer of lines for the shared file.
type incidentLog struct {
	f   *os.File // nil: no --incidents
	buf []byte
}

// openIncidents opens path for appending; "" means no log.
func openIncidents(path string) (*os.File, error) {
	if path == "" {
		return nil, nil
	}
	return os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
}

func (l *incidentLog) add(in incident) {
	if l.f == nil {
		return
	}
	in.T = time.Now().UnixMilli()
	b, _ := json.Marshal(in)
	l.buf = append(append(l.buf, b...), '\n')
	if len(l.buf) >= 32<<10 {
		l.flush()
	}
}

// flush writes the buffered lines in one write (O_APPEND keeps them whole).
func (l *incidentLog) flush() {
	if l.f == nil || len(l.buf) == 0 {
		return
	}
	_, _ = l.f.Write(l.buf)
	l.buf = l.buf[:0]
}

// connEnd is the cause of s's connection ending now, from what it saw.
func connEnd(s *session, why string) string {
	switch {
	case s.goaway:
		return causeGoAway
	case s.errCode != 0:
		return "error_" + strconv.Itoa(s.errCode)
	}
	return why
}

// violation counts n of counter k for s and logs it.
func (w *worker) violation(s *session, k string, n int64) {
	if n == 0 {
		return
	}
	w.st.add(k, n)
	w.inc.add(incident{What: k, N: n, Addr: s.addrStr, ID: s.id})
}

// observe feeds v to c (the upstream or downstream check of s) and counts
// and logs what it found wrong; dir is "up" or "down".
func (w *worker) observe(s *session, c *seqCheck, dir string, v uint64) {
	lost, dup, reorder := c.Lost, c.Dup, c.Reorder
	c.observe(v)
	w.violation(s, dir+"_lost", c.Lost-lost)
	w.violation(s, dir+"_dup", c.Dup-dup)
	w.violation(s, dir+"_reorder", c.Reorder-reorder)
	c.Lost, c.Dup, c.Reorder = lost, dup, reorder
}
