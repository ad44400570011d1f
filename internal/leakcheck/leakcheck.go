// Package leakcheck checks, after a package's tests, that they left no
// goroutine behind, waiting for the ones that end on their own.
//
// goleak.VerifyTestMain gives stragglers about a second. memberlist's
// Shutdown does not wait for a probe in flight: its goroutine blocks until
// the probe's ack timer fires, up to Lifeguard's awareness multiplier (8)
// times the probe interval after Close returned, and longer on a starved
// box. Main polls goleak for Wait instead, so such a goroutine is waited
// for, while one that never ends still fails the run.
package leakcheck

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Wait is how long Main waits for leftover goroutines to end.
const Wait = 30 * time.Second

// Netpoll ignores what netpoll starts once per process and never stops:
// its pollers and its goroutine pool's workers.
var Netpoll = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/cloudwego/netpoll.(*defaultPoll).Wait"),
	goleak.IgnoreTopFunction("github.com/bytedance/gopkg/util/gopool.(*worker).run.func1"),
}

// Main runs the package's tests, then, when they passed, fails the run if
// goroutines other than the ignored ones are still running after Wait.
// after, when not nil, runs between the two (cleanup of files the tests
// shared). It is meant to be all of TestMain.
func Main(m *testing.M, after func(), opts ...goleak.Option) {
	code := m.Run()
	if after != nil {
		after()
	}
	if code == 0 {
		if err := Find(Wait, opts...); err != nil {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines left after %v: %v\n", Wait, err)
			code = 1
		}
	}
	os.Exit(code)
}

// Find polls goleak.Find until it reports nothing or within has passed,
// and returns its last error.
func Find(within time.Duration, opts ...goleak.Option) error {
	deadline := time.Now().Add(within)
	for {
		err := goleak.Find(opts...)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
