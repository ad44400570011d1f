// Package client is the Go device client of Switchyard: it speaks the device
// protocol (PROTOCOL.md) to a gateway on behalf of one device.
//
// A Client does the handshake (HELLO, WELCOME), keeps the connection alive
// with heartbeats, sends best-effort and reliable DATA, keeps reliable
// upstream frames until the gateway acknowledges them, acknowledges and
// de-duplicates reliable downstream DATA, and after a connection loss or a
// GOAWAY reconnects and resumes its session, resending unacknowledged frames
// from WELCOME `last` + 1.
//
// Connection lifecycle, as the manager goroutine sees it:
//
//	Dial ──▶ handshake ──▶ attach ──▶ serve ──┬── Close ─────────────▶ stopped
//	                         ▲                ├── ERROR 401/409/400/413 ▶ stopped (Recv returns *Error)
//	                         │                └── loss / GOAWAY / dead
//	                         └── handshake ◀── wait (GOAWAY delay or backoff)
//
// Goroutines: each Client owns one manager goroutine (reconnects, timers,
// heartbeats, ACK and PONG writes) and one reader goroutine per connection
// (at most one at a time). Close stops both and waits for them.
//
// Invariants:
//
//   - reliable upstream DATA goes out in seq order on every connection: seq
//     assignment and the write happen under one lock (wmu), and a resume
//     resends the unacknowledged frames before any new one;
//   - the application sees each reliable downstream frame once, in order:
//     frames with seq at or below the highest delivered are dropped (and
//     acknowledged again);
//   - at most Config.MaxPending reliable frames are unacknowledged; Send
//     blocks while the bound is reached.
//
// Package clienttest holds a scripted fake gateway for tests of clients.
//
// Lock order: Client.wmu before Client.mu. Nothing blocks on the network
// while holding mu.
package client
