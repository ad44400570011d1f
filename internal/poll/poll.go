// Package poll is the tests' one way to wait for a condition: check it,
// sleep a little, until it holds or a deadline passes. Tests wait on
// conditions, never on a fixed sleep, and with deadlines generous enough
// for a loaded 2-core box running go test -race ./... (the deadline is
// only spent when something is wrong).
package poll

import (
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
