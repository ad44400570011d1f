// Package timewheel is a hashed timing wheel: one goroutine, one ticker,
// any number of deadlines, no timer per deadline.
//
// The gateway keeps every per-connection deadline (handshake, idle, GOAWAY
// close) and every per-session expiry here, so a million idle sessions cost
// one goroutine and one ticker instead of a million runtime timers. An Entry
// is embedded in its owner (no allocation to schedule), and the wheel's tick
// doubles as a coarse clock (Now) that the hot path reads instead of calling
// time.Now per frame.
//
// Deadlines fire within about one tick of their time: the wheel counts
// whole ticks from the tick Schedule ran in (so up to one tick early),
// and the sweeper runs once per tick (so late by up to a tick, more when
// the box is starved). Expire callbacks run on the wheel's
// goroutine without the wheel's lock held, so they may Schedule or Cancel;
// they must not block.
//
// Goroutines: Start starts exactly one (the sweeper); Stop waits for it.
package timewheel
