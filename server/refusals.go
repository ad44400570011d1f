package server

import (
	"log/slog"
	"sync"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Refused devices are logged (device id, remote address, code, why) so an
// operator can answer "why can't device X connect?", but a reconnect storm
// of refused devices must not become a log storm: at most refusalLines
// lines per second, then one line saying how many were suppressed. The
// counters (switchyard_errors_sent_total, switchyard_disconnects_total)
// keep the exact numbers.

// refusalLines is how many refusals are logged per second at most.
const refusalLines = 10

// refusalLog rate-limits the refusal lines. Refusals are per connection,
// never per frame, so a mutex is cheap enough.
type refusalLog struct {
	log   *slog.Logger
	max   int
	now   func() time.Time
	mu    sync.Mutex
	start time.Time // the current one-second window
	n     int       // lines logged in it
	quiet int       // lines suppressed in it
}

func newRefusalLog(log *slog.Logger, perSecond int, now func() time.Time) *refusalLog {
	return &refusalLog{log: log, max: perSecond, now: now}
}

// note logs one refused device unless this second's lines are used up.
func (r *refusalLog) note(code int, device, remote, why string) {
	r.mu.Lock()
	t := r.now()
	suppressed := 0
	if t.Sub(r.start) >= time.Second {
		suppressed = r.quiet
		r.start, r.n, r.quiet = t, 0, 0
	}
	ok := r.n < r.max
	if ok {
		r.n++
	} else {
		r.quiet++
	}
	r.mu.Unlock()
	if suppressed > 0 {
		r.log.Warn("refused devices: lines suppressed", "suppressed", suppressed, "per_second", r.max)
	}
	if ok {
		r.log.Warn("device refused", "code", code, "device", device, "remote", remote, "why", why)
	}
}

// refusable are the ERROR codes logged as refusals.
func refusable(code int) bool {
	switch code {
	case protocol.CodeUnauthorized, protocol.CodeConflict, protocol.CodeRateLimited, protocol.CodeUnavailable:
		return true
	}
	return false
}

// refused logs the refusal of device and fails the connection with code.
func (c *conn) refused(code int, device, msg string) {
	c.g.refusals.note(code, device, c.remote(), msg)
	c.fail(code, msg)
}

// remote is the device's address, or "" once netpoll no longer knows it.
func (c *conn) remote() string {
	if a := c.proxyRemote(); a != "" {
		return a // behind a load balancer: the address from the PROXY header
	}
	if a := c.nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}
