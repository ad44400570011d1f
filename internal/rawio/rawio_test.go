package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/internal/rawio/rawiotest"
	"golang.org/x/sys/unix"
)

// pair is a connected loopback TCP pair: a wrapped, b plain.
func pair(t *testing.T) (*Conn, *net.TCPConn) {
	t.Helper()
	c, s := rawiotest.Pair(t)
	w, ok := Wrap(c).(*Conn)
	if !ok {
		t.Fatalf("Wrap(%T) is not a *Conn", c)
	}
	return w, s.(*net.TCPConn)
}

func fd(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	rc.Control(func(f uintptr) { n = int(f) })
	return n
}

// TestConnBehavesLikeTCPConn: what the links rely on of a net.Conn —
// bytes both ways, a large write that has to wait for the reader, EOF,
// a read deadline that is a net.Error timeout, and Close ending a blocked
// Read with net.ErrClosed.
func TestConnBehavesLikeTCPConn(t *testing.T) {
	w, s := pair(t)

	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "hello" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if _, err := s.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(w, got); err != nil || string(got) != "world" {
		t.Fatalf("wrapped read %q, %v", got, err)
	}

	// 16 MB is far more than the socket buffers hold: Write must wait
	// for the reader (EAGAIN, parked) and still deliver every byte.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20)
	done := make(chan error, 1)
	go func() {
		n, err := w.Write(big)
		if err == nil && n != len(big) {
			err = io.ErrShortWrite
		}
		done <- err
	}()
	back := make([]byte, len(big))
	if _, err := io.ReadFull(s, back); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, big) {
		t.Fatal("the large write arrived altered")
	}

	w.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := w.Read(got)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want a net.Error timeout", err)
	}
	w.SetReadDeadline(time.Time{})

	go func() {
		_, err := w.Read(got)
		done <- err
	}()
	poll.Until(t, poll.Patience, func() error {
		if st := poll.GoroutineState("rawio.(*Conn).Read"); st != "IO wait" {
			return errors.New("reader not parked yet: " + st)
		}
		return nil
	})
	w.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read ended by Close: %v, want net.ErrClosed", err)
	}

	w2, s2 := pair(t)
	s2.Close()
	if n, err := w2.Read(got); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want 0, EOF", n, err)
	}
}

// TestSocketCalls: the raw getsockopt, setsockopt, MSG_PEEK and SIOCINQ
// give what their package syscall counterparts give.
func TestSocketCalls(t *testing.T) {
	w, s := pair(t)
	f := fd(t, w)
	if err := SetsockoptInt(f, unix.IPPROTO_TCP, unix.TCP_NODELAY, 0); err != nil {
		t.Fatal(err)
	}
	var v int32
	n := uint32(unsafe.Sizeof(v))
	if err := Getsockopt(f, unix.IPPROTO_TCP, unix.TCP_NODELAY, unsafe.Pointer(&v), &n); err != nil || v != 0 {
		t.Fatalf("TCP_NODELAY after setting 0: %d, %v", v, err)
	}
	if err := SetsockoptInt(f, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		t.Fatal(err)
	}
	if got, err := unix.GetsockoptInt(f, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || got == 0 {
		t.Fatalf("TCP_NODELAY after setting 1: %d, %v", got, err)
	}

	b := make([]byte, 8)
	if _, err := Peek(f, b); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("peek with nothing there: %v, want EAGAIN", err)
	}
	if _, err := s.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, poll.Patience, func() error {
		if q, err := InQueue(f); err != nil || q != 3 {
			return errors.New("SIOCINQ not 3 yet")
		}
		return nil
	})
	if k, err := Peek(f, b); err != nil || string(b[:k]) != "abc" {
		t.Fatalf("peek: %q, %v", b[:k], err)
	}
	if k, err := Read(f, b); err != nil || string(b[:k]) != "abc" {
		t.Fatalf("read after peek: %q, %v (peek must leave the bytes)", b[:k], err)
	}
	if _, err := Read(f, b); !errors.Is(err, syscall.EAGAIN) {
		t.Fatalf("read with nothing there: %v, want EAGAIN", err)
	}
}
