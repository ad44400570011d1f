package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"golang.org/x/sys/unix"
)

// TestAcceptedSocketOptions checks the accept patch in third_party/netpoll
// (PATCH.md): a connection the listener accepts is non-blocking and has
// TCP_NODELAY although netpoll sets neither per connection any more
// (accept4 made it non-blocking; it inherited TCP_NODELAY from the
// listener). A listener that lost its TCP_NODELAY, or a kernel that does
// not pass it on, fails here instead of slowing every small write.
func TestAcceptedSocketOptions(t *testing.T) {
	fds := make(chan int, 1)
	ln := serveNetpoll(t, func(context.Context, netpoll.Connection) error { return nil },
		func(c netpoll.Connection) context.Context {
			fds <- c.(interface{ Fd() int }).Fd()
			return context.Background()
		})
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var fd int
	select {
	case fd = <-fds:
	case <-time.After(poll.Patience):
		t.Fatal("the connection was not accepted")
	}
	if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v == 0 {
		t.Errorf("accepted socket: TCP_NODELAY = %d (%v), want it set", v, err)
	}
	if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("accepted socket: flags %#x (%v), want O_NONBLOCK", fl, err)
	}
}

// serveNetpoll serves a listener on a free loopback port with a bare
// netpoll event loop (no Gateway) until the test ends: the netpoll patch
// tests look at netpoll alone.
func serveNetpoll(t *testing.T, onRequest netpoll.OnRequest, onPrepare netpoll.OnPrepare) netpoll.Listener {
	t.Helper()
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	evl, err := netpoll.NewEventLoop(onRequest, netpoll.WithOnPrepare(onPrepare))
	if err != nil {
		t.Fatal(err)
	}
	go evl.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), poll.Patience)
		defer cancel()
		_ = evl.Shutdown(ctx)
	})
	return ln
}
