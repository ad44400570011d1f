package client

import (
	"math/rand/v2"
	"time"
)

// backoff yields reconnect delays with full jitter: attempt n waits a
// uniformly random time in [0, min(max, min·2ⁿ)].
type backoff struct {
	min, max time.Duration
	attempt  int
}

// next returns the delay before the next attempt and advances.
func (b *backoff) next() time.Duration {
	ceil := b.max
	if b.attempt < 40 && b.min<<b.attempt < b.max {
		ceil = b.min << b.attempt
	}
	b.attempt++
	return jitter(ceil)
}

// jitter returns a uniformly random duration in [0, d].
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d) + 1))
}
