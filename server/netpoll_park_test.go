package server

import (
	"fmt"
	"testing"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/protocol"
)

// TestNetpollPollerParks checks the patch in third_party/netpoll
// (PATCH.md): an idle netpoll poller waits parked in Go's own poller
// ("IO wait"), not inside an epoll_wait system call ("syscall"), which
// keeps a P busy and the runtime's sysmon thread awake. With upstream
// netpoll, or an upgrade that drops the patch, the poller's goroutine
// stays in the syscall state and this fails.
func TestNetpollPollerParks(t *testing.T) {
	g := startGateway(t, Config{})
	d := dial(t, g)
	d.hello(protocol.Hello{ID: "park"})
	d.send(protocol.TypeData, 0, 0, []byte("x"))
	d.read() // the poller has served events and is idle again
	poll.Until(t, poll.Patience, func() error {
		if s := poll.GoroutineState("netpoll.(*defaultPoll).Wait"); s != "IO wait" {
			return fmt.Errorf("netpoll's poller is in state %q, want \"IO wait\"", s)
		}
		return nil
	})
}
