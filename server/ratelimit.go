package server

import "sync"

// rateLimiter is a per-device token bucket on the wheel's coarse clock. It
// is touched only by the connection's handler, so it needs no lock.
type rateLimiter struct {
	tokens      float32
	dropped     bool   // a frame was dropped since reset (lastDrop is set); fits the padding after tokens
	batchDrops  uint16 // frames dropped in the current handler call (onRequest resets it), saturating; fits the padding too
	last        int64  // tick of the last refill
	lastDrop    int64  // tick of the last dropped frame
	excessStart int64  // tick the current run of drops began
	lastNotice  int64  // tick of the last ERROR 429 sent
}

func (r *rateLimiter) reset(g *Gateway) {
	*r = rateLimiter{tokens: g.live.Load().rateBurst, last: g.wheel.Now()}
}

// allow takes one token, refilling by the ticks elapsed.
func (r *rateLimiter) allow(g *Gateway) bool {
	lv := g.live.Load()
	if lv.ratePerTick < 0 {
		return true
	}
	if now := g.wheel.Now(); now != r.last {
		r.tokens += float32(now-r.last) * lv.ratePerTick
		r.last = now
	}
	r.tokens = min(r.tokens, lv.rateBurst) // also when a reload lowered the burst
	if r.tokens >= 1 {
		r.tokens--
		return true
	}
	return false
}

// bucket is a token bucket shared by goroutines (the accept limit).
type bucket struct {
	mu      sync.Mutex
	tokens  float64
	last    int64
	perTick float64 // < 0: unlimited
	burst   float64
}

func (b *bucket) allow(now int64) bool {
	if b.perTick < 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if now != b.last {
		b.tokens = min(b.tokens+float64(now-b.last)*b.perTick, b.burst)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}
