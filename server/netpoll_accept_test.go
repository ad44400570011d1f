package server

import (
	"context"
	"math"
	"net"
	"sync/atomic"
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
	return serveNetpollAfter(t, nil, onRequest, onPrepare)
}

// serveNetpollAfter is serveNetpoll that first calls before, if not nil,
// with the listener's address, while nothing accepts yet: what it connects
// waits in the kernel's accept queue. opts go to the event loop.
func serveNetpollAfter(t *testing.T, before func(addr string), onRequest netpoll.OnRequest, onPrepare netpoll.OnPrepare, opts ...netpoll.Option) netpoll.Listener {
	t.Helper()
	ln, err := netpoll.CreateListener("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(ln.Addr().String())
	}
	evl, err := netpoll.NewEventLoop(onRequest, append([]netpoll.Option{netpoll.WithOnPrepare(onPrepare)}, opts...)...)
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

// TestListenerAcceptsInBatches checks the fourth netpoll patch (PATCH.md):
// with WithAcceptBatch, one readiness event of the listener accepts up to
// the batch's queued connections, not one. Upstream's poller accepted one
// connection per wait; between two accepts it went through every other
// ready event, which in a reconnect storm were thousands of resets.
//
// It queues connections that each sent a byte before anything accepts,
// then looks, at the last accept, whether the poller has read the earlier
// connections' bytes yet. The poller accepts and reads on one goroutine:
// one accept per wait reads connection 1 in the pass that accepts
// connection 2, so by the last accept the first ones hold their byte; a
// batch accepts them all before it reads any. Without the option the
// same count must come out above zero (upstream's behaviour), or the test
// could not tell the two apart.
func TestListenerAcceptsInBatches(t *testing.T) {
	// One poller, netpoll's default below 20 Ps: the listener's and its
	// connections' events then come from the same loop.
	if err := netpoll.SetNumLoops(1); err != nil {
		t.Fatal(err)
	}
	if early := readBeforeLastAccept(t, netpoll.WithAcceptBatch(func() int { return netpoll.MaxAcceptBatch })); early != 0 {
		t.Errorf("batch of %d: at the last of %d queued accepts the poller had read %d earlier connections: "+
			"it went back to its other events between accepts (one accept per event, not a batch)",
			netpoll.MaxAcceptBatch, queuedAccepts, early)
	}
	if early := readBeforeLastAccept(t); early == 0 {
		t.Errorf("without WithAcceptBatch the poller read no earlier connection before the last of %d accepts: "+
			"the test cannot tell one accept per event from a batch", queuedAccepts)
	}
}

// queuedAccepts is how many connections readBeforeLastAccept queues: within
// netpoll.MaxAcceptBatch and the box's accept queue.
const queuedAccepts = 200

// readBeforeLastAccept queues queuedAccepts connections that each sent a
// byte, serves them with opts, and returns how many of the earlier ones
// the poller had read from when it accepted the last.
func readBeforeLastAccept(t *testing.T, opts ...netpoll.Option) int {
	t.Helper()
	var (
		clients   []net.Conn
		accepted  []netpoll.Connection // only the poller's goroutine touches it
		readEarly = -1                 // connections already read at the last accept
		handled   atomic.Int64         // bytes the handler consumed
		done      = make(chan struct{})
	)
	defer func() { // before the event loop's shutdown, which waits for open connections
		for _, c := range clients {
			c.Close()
		}
	}()
	serveNetpollAfter(t, func(addr string) {
		for range queuedAccepts {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			clients = append(clients, c)
			if _, err := c.Write([]byte{1}); err != nil {
				t.Fatal(err)
			}
		}
	}, func(_ context.Context, c netpoll.Connection) error {
		r := c.Reader() // a handler must consume its input, or netpoll calls it again and again
		n := r.Len()
		_ = r.Skip(n)
		handled.Add(int64(n))
		return r.Release()
	},
		func(c netpoll.Connection) context.Context {
			accepted = append(accepted, c)
			if len(accepted) == queuedAccepts {
				readEarly = int(handled.Load())
				for _, a := range accepted[:queuedAccepts-1] {
					if a.Reader().Len() > 0 {
						readEarly++
					}
				}
				close(done)
			}
			return context.Background()
		}, opts...)
	select {
	case <-done:
	case <-time.After(poll.Patience):
		t.Fatalf("the %d queued connections were not all accepted", queuedAccepts)
	}
	return readEarly
}

// TestGatewayAcceptsByBudget checks the gateway's side of the fourth
// netpoll patch: the option its listener is served with (acceptBatch)
// accepts a queue in one go when the gateway's measured pace allows it,
// and one connection per event when nothing has been measured yet.
func TestGatewayAcceptsByBudget(t *testing.T) {
	if err := netpoll.SetNumLoops(1); err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Listen: "127.0.0.1:0", AdminListen: "-"})
	if err != nil {
		t.Fatal(err)
	}
	g.shed.rateBm.Store(math.Float64bits(20000)) // 20,000 handshakes/s: room for 10,000
	if early := readBeforeLastAccept(t, g.acceptBatch()); early != 0 {
		t.Errorf("a gateway with room for the whole queue: the poller read %d connections before the last of %d accepts, "+
			"so it accepted them one per event", early, queuedAccepts)
	}
	g.shed.rateBm.Store(0) // idle: nothing measured
	if early := readBeforeLastAccept(t, g.acceptBatch()); early == 0 {
		t.Errorf("an idle gateway accepted its whole queue of %d in one go: "+
			"its budget does not go by its measured pace", queuedAccepts)
	}
}
