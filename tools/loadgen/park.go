package main

import (
	"errors"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// epollWaiter waits on a worker's epoll instance parked in Go's own poller
// instead of blocking in epoll_wait. A goroutine blocked in a system call
// keeps its P, and while any P is busy the runtime's sysmon thread cannot
// sleep: it wakes every 20 µs to 10 ms to retake it. With dozens of loadgen
// and gateway processes on two cores that was a third of the box's CPU
// (docs/scale.md). Parked, an idle worker costs nothing until an event.
type epollWaiter struct {
	fd int
	f  *os.File // owns fd
	rc syscall.RawConn
}

func newEpollWaiter(epfd int) (*epollWaiter, error) {
	if err := unix.SetNonblock(epfd, true); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(epfd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &epollWaiter{fd: epfd, f: f, rc: rc}, nil
}

// wait is epoll_wait(fd, events, timeout): the events ready now, or the
// first to come within timeout (≤ 0: do not wait).
func (w *epollWaiter) wait(events []unix.EpollEvent, timeout time.Duration) (n int, err error) {
	n, err = epollPoll(w.fd, events)
	if n != 0 || err != nil || timeout <= 0 {
		return n, err
	}
	w.f.SetReadDeadline(time.Now().Add(timeout))
	perr := w.rc.Read(func(uintptr) bool {
		n, err = epollPoll(w.fd, events)
		return n != 0 || err != nil
	})
	if perr != nil && !errors.Is(perr, os.ErrDeadlineExceeded) {
		return 0, perr
	}
	return n, err
}

func (w *epollWaiter) close() error { return w.f.Close() }

// epollPoll is a non-blocking epoll_wait. It is a raw system call: it
// never blocks, so the goroutine keeps its P and sysmon is not woken.
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e == unix.EINTR {
		return 0, nil
	}
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
