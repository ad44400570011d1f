// Package timewheel is a hashed timing wheel: one goroutine, one timer,
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
// Deadlines in the current lap (41 s at the default geometry) sit in their
// slots; later ones wait in a far level of 64 one-lap slots and move down
// when their lap begins. The slots thus hold only what the sweeper meets
// on this pass, however many idle timeouts minutes out the sessions keep
// pushing ahead of them.
//
// The sweeper sleeps when nothing needs it: when the next deadline is more
// than two ticks away, the tick callback has no work left and nothing woke
// it in the last second, it sleeps until that deadline's slot or the next
// lap with far deadlines (or until woken, when the wheel is empty).
// Schedule of an earlier deadline and Wake wake it; while it sleeps Now
// reads the real clock, and wakes it only when reads keep coming faster
// than a few a tick (traffic, a read per frame), counted over the sleep
// and a second more: a few dozen heartbeats that arrive together are not
// traffic (docs/benchmarks.md "Heartbeats on a grid"). A 10 ms ticker cost 100 wakeups a second
// in every gateway (issue 11: 55 idle gateways took 0.35 cores); now an
// idle gateway's wheel costs none, and one whose sessions only heartbeat
// wakes about once a lap plus once per deadline due.
//
// Goroutines: Start starts exactly one (the sweeper); Stop waits for it.
package timewheel
