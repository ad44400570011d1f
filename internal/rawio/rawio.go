// Package rawio makes the system calls of a gateway's and a shard's busy
// paths on non-blocking sockets as raw system calls.
//
// A system call made through package syscall (and so through package
// net) enters the scheduler's syscall state: it wakes the runtime's sysmon
// thread when it sleeps and resets its polling to every 20 µs, and a call
// that sysmon sees still running may lose its P to another thread. On a
// non-blocking socket the call cannot block, so none of that buys
// anything; with dozens of processes on two cores it cost a context switch
// or several per call, and sysmon was the largest single item of the
// gateways' CPU in the million-session run (docs/scale.md). A raw system
// call is invisible to the scheduler.
//
// Only calls that never block may be made raw: reads and writes of
// non-blocking sockets, accept4 on a non-blocking listener, getsockopt,
// setsockopt, fcntl, ioctl.
package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read is read(2) on a non-blocking fd, Write write(2): raw calls
// (norace.go), but through package syscall under the race detector
// (race.go), whose read and write tell the detector that what one
// goroutine wrote to a socket happened before another read it. Raw, a
// test that syncs through a socket (a device reading the shard's answer,
// then checking what the shard recorded) would be reported as a race.

func io3(trap uintptr, fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Getsockopt is getsockopt(2) into the n bytes at p; n is updated.
func Getsockopt(fd, level, opt int, p unsafe.Pointer, n *uint32) error {
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(n)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// SetsockoptInt is setsockopt(2) of an int option.
func SetsockoptInt(fd, level, opt, value int) error {
	v := int32(value)
	_, _, e := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), 4, 0)
	if e != 0 {
		return e
	}
	return nil
}

// Peek is recv(2) with MSG_PEEK|MSG_DONTWAIT of up to len(p) bytes.
func Peek(fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// InQueue is how many bytes wait unread in a socket's receive queue
// (ioctl SIOCINQ).
func InQueue(fd int) (int, error) {
	var n int32
	_, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, uintptr(fd), unix.SIOCINQ, uintptr(unsafe.Pointer(&n)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// Waiting reports whether bytes wait unread in c's socket: false when c
// has no socket of its own to look into (TLS, a pipe) or the ioctl fails.
// It is for the rare path (a read deadline that passed): it allocates.
func Waiting(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	if rc.Control(func(fd uintptr) { n, _ = InQueue(int(fd)) }) != nil {
		return false
	}
	return n > 0
}

// Conn is a TCP connection whose Read and Write are raw system calls. It
// waits for readiness, and honours deadlines and Close, through Go's own
// poller exactly as net.TCPConn does (its syscall.RawConn); everything
// else is the TCPConn's. Read and Write allocate nothing: each keeps its
// call's state in the Conn, under its own mutex, and hands the poller a
// function made once (a closure per call would be two allocations).
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn

	rmu    sync.Mutex
	rp     []byte
	rn     int
	rerr   error
	readFn func(uintptr) bool

	wmu     sync.Mutex
	wp      []byte
	wn      int
	werr    error
	writeFn func(uintptr) bool
}

// Wrap returns c as a *Conn when it is a *net.TCPConn, else c itself.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	w := &Conn{TCPConn: tc, rc: rc}
	w.readFn, w.writeFn = w.readOnce, w.writeAll
	return w
}

// readOnce is the poller's read function: false asks it to wait.
func (c *Conn) readOnce(fd uintptr) bool {
	for {
		c.rn, c.rerr = Read(int(fd), c.rp)
		if c.rerr != syscall.EINTR {
			return c.rerr != syscall.EAGAIN
		}
	}
}

// writeAll is the poller's write function: false asks it to wait.
func (c *Conn) writeAll(fd uintptr) bool {
	for c.wn < len(c.wp) {
		m, e := Write(int(fd), c.wp[c.wn:])
		switch e {
		case nil:
			c.wn += m
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// Read reads as net.Conn's Read does.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rp, c.rn, c.rerr = p, 0, nil
	err := c.rc.Read(c.readFn)
	n, rerr := c.rn, c.rerr
	c.rp = nil
	if err == nil && rerr != nil {
		err = c.opError("read", os.NewSyscallError("read", rerr))
	}
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p as net.Conn's Write does.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wp, c.wn, c.werr = p, 0, nil
	err := c.rc.Write(c.writeFn)
	n, werr := c.wn, c.werr
	c.wp = nil
	if err == nil && werr != nil {
		err = c.opError("write", os.NewSyscallError("write", werr))
	}
	return n, err
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
