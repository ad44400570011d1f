// Package poll is the tests' one way to wait for a condition: check it,
// sleep a little, until it holds or a deadline passes. Tests wait on
// conditions, never on a fixed sleep, and with deadlines generous enough
// for a loaded 2-core box running go test -race ./... (the deadline is
// only spent when something is wrong).
package poll

import (
	"bytes"
	"runtime"
	"testing"
	"time"
)

// Patience is the default deadline for a cluster condition: gossip
// convergence, a ring change, a session moving. A healthy run meets it in
// well under a second; a starved one may take tens of seconds.
const Patience = 60 * time.Second

// Interval is the pause between two checks.
const Interval = 10 * time.Millisecond

// Until calls cond every Interval until it returns nil, and fails the test
// with cond's last error once within has passed.
func Until(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", within, err)
		}
		time.Sleep(Interval)
	}
}

// GoroutineState is the scheduler state of the first goroutine whose
// stack mentions fn, as runtime.Stack prints it ("IO wait", "syscall",
// "running", …), or "" when no goroutine's does. Tests use it to tell a
// goroutine parked in Go's poller from one blocked in a system call.
func GoroutineState(fn string) string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, st := range bytes.Split(buf, []byte("\n\n")) {
		if !bytes.Contains(st, []byte(fn)) {
			continue
		}
		// "goroutine 7 [IO wait]:" or "goroutine 7 [IO wait, 2 minutes]:"
		open, end := bytes.IndexByte(st, '['), bytes.IndexByte(st, ']')
		if open < 0 || end < open {
			return ""
		}
		state, _, _ := bytes.Cut(st[open+1:end], []byte(","))
		return string(state)
	}
	return ""
}
