package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloudwego/netpoll"
	"github.com/switchyard-gw/switchyard/internal/rawio"
	"github.com/switchyard-gw/switchyard/protocol"
	"golang.org/x/sys/unix"
)

// maxLength bounds the length field: a longer frame closes the connection.
const maxLength = protocol.DefaultMaxFrame + protocol.HeaderSize

func main() {
	listen := flag.String("listen", "127.0.0.1:7402", "address to accept on")
	bufSize := flag.Int("buffer-size", 0, "netpoll BufferSize and LinkBufferCap in bytes (0: netpoll defaults)")
	deferAccept := flag.Bool("defer-accept", false, "TCP_DEFER_ACCEPT on the listener, as the gateway's")
	helloAtAccept := flag.Bool("hello-at-accept", false, "answer a HELLO that came with its connection inside OnPrepare, before netpoll registers the connection (an experiment: docs/benchmarks.md \"The floor of a handshake\"; use with --defer-accept)")
	flag.Parse()
	if err := run(*listen, *bufSize, *deferAccept, *helloAtAccept); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(addr string, bufSize int, deferAccept, helloAtAccept bool) error {
	if bufSize > 0 {
		if err := netpoll.Configure(netpoll.Config{BufferSize: bufSize}); err != nil {
			return err
		}
		netpoll.LinkBufferCap = bufSize
	}
	welcome, err := welcomeFrame()
	if err != nil {
		return err
	}
	ln, err := netpoll.CreateListener("tcp", addr)
	if err != nil {
		return fmt.Errorf("netpollecho: listen %s: %w", addr, err)
	}
	if deferAccept {
		if err := unix.SetsockoptInt(ln.Fd(), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1); err != nil {
			return err
		}
	}
	loop, err := netpoll.NewEventLoop(func(_ context.Context, c netpoll.Connection) error {
		return onRequest(c, welcome)
	}, netpoll.WithOnPrepare(func(c netpoll.Connection) context.Context {
		if helloAtAccept {
			answerAtAccept(c, welcome)
		}
		return context.Background()
	}))
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		loop.Shutdown(ctx)
	}()
	err = loop.Serve(ln)
	if errors.Is(err, netpoll.ErrConnClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// answerAtAccept answers a HELLO that came with its connection, with raw
// calls on the socket, before netpoll registers it and reads anything:
// one peek, the HELLO read away, the WELCOME written. What follows the
// HELLO goes the usual way.
func answerAtAccept(c netpoll.Connection, welcome []byte) {
	fd := c.(interface{ Fd() int }).Fd()
	var b [512]byte
	n, e := rawio.Peek(fd, b[:])
	if e != nil || n < protocol.HeaderSize || protocol.Type(b[protocol.LengthSize]) != protocol.TypeHello {
		return
	}
	size := protocol.LengthSize + int(binary.BigEndian.Uint32(b[:]))
	if size > n {
		return
	}
	if _, err := rawio.Read(fd, b[:size]); err != nil {
		return
	}
	_, _ = rawio.Write(fd, welcome)
}

func welcomeFrame() ([]byte, error) {
	p, err := protocol.Marshal(&protocol.Welcome{Session: "echo", HB: 30, MaxFrame: protocol.DefaultMaxFrame, Node: "netpollecho"})
	if err != nil {
		return nil, err
	}
	return protocol.AppendFrame(nil, protocol.TypeWelcome, 0, 0, p), nil
}

// onRequest consumes every frame buffered, answers each and flushes
// once. A frame only partly buffered is waited for (Peek and Next block
// until their bytes are in): netpoll calls onRequest again at once for as
// long as input is left unread, so a handler that returned with part of a
// frame unread would spin on it, and with a spinning handler on each P the
// poller that reads the rest may not run for seconds (two reps of `make
// bench` on 2026-12-05 echoed nothing with both cores busy).
func onRequest(c netpoll.Connection, welcome []byte) error {
	r, w := c.Reader(), c.Writer()
	for r.Len() > 0 {
		hdr, err := r.Peek(protocol.HeaderSize)
		if err != nil {
			return err
		}
		n := protocol.LengthSize + int(binary.BigEndian.Uint32(hdr))
		if n > maxLength || n < protocol.HeaderSize {
			return c.Close()
		}
		frame, err := r.Next(n)
		if err != nil {
			return err
		}
		if protocol.Type(frame[4]) == protocol.TypeHello {
			_, err = w.WriteBinary(welcome)
		} else {
			err = copyTo(w, frame) // frame aliases r's buffer: copy before Release
		}
		if err != nil {
			return err
		}
	}
	if err := r.Release(); err != nil {
		return err
	}
	return w.Flush()
}

func copyTo(w netpoll.Writer, b []byte) error {
	dst, err := w.Malloc(len(b))
	if err != nil {
		return err
	}
	copy(dst, b)
	return nil
}
