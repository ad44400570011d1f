package main

import "math"

// schedule is the open-loop send times of one session, in nanoseconds
// since the run's base time: frame k is due at start + k·interval. A frame
// is sent when due whatever happened to the earlier ones, and its latency
// is taken from this due time, not from when it was actually written: a
// client that falls behind shows it as latency (no coordinated omission).
type schedule struct {
	start    int64   // ns since base of frame 0
	interval float64 // ns between two frames
}

// newSchedule returns a schedule of rate frames/s from start.
func newSchedule(start int64, rate float64) schedule {
	return schedule{start: start, interval: 1e9 / rate}
}

// at is the due time of frame k.
func (s schedule) at(k int64) int64 {
	return s.start + int64(math.Round(float64(k)*s.interval))
}

// before is the number of frames due strictly before t.
func (s schedule) before(t int64) int64 {
	if t <= s.start {
		return 0
	}
	k := int64(math.Ceil(float64(t-s.start) / s.interval))
	for k > 0 && s.at(k-1) >= t {
		k--
	}
	for s.at(k) < t {
		k++
	}
	return k
}

// due is how many frames from index next are due at now (inclusive), at
// most limit.
func (s schedule) due(next, now int64, limit int) int {
	n := s.before(now+1) - next
	if n <= 0 {
		return 0
	}
	return int(min(n, int64(limit)))
}

// startAt is when session g starts under a ramp of ramp sessions/s (0:
// all at once), in ns since base.
func startAt(g int, ramp float64) int64 {
	if ramp <= 0 {
		return 0
	}
	return int64(float64(g) * 1e9 / ramp)
}
