package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/poll"
	"golang.org/x/sys/unix"
)

// TestEpollWaiterParks: a worker waiting for events is parked in Go's
// poller ("IO wait"), not blocked in epoll_wait ("syscall"), an event
// written meanwhile ends the wait with that event, and with none the wait
// ends empty at its timeout.
func TestEpollWaiterParks(t *testing.T) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newEpollWaiter(epfd)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		t.Fatal(err)
	}
	events := make([]unix.EpollEvent, 8)

	if n, err := w.wait(events, 20*time.Millisecond); n != 0 || err != nil {
		t.Fatalf("nothing ready: wait = %d, %v", n, err)
	}

	type result struct {
		n   int
		err error
		fd  int32
	}
	done := make(chan result, 1)
	go func() {
		n, err := w.wait(events, time.Hour)
		done <- result{n, err, events[0].Fd}
	}()
	poll.Until(t, poll.Patience, func() error {
		if s := poll.GoroutineState("(*epollWaiter).wait"); s != "IO wait" {
			return fmt.Errorf("the waiting goroutine is in state %q, want \"IO wait\"", s)
		}
		return nil
	})
	if _, err := unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.n != 1 || r.err != nil || r.fd != int32(efd) {
			t.Fatalf("wait = %d, %v, fd %d; want 1 event of fd %d", r.n, r.err, r.fd, efd)
		}
	case <-time.After(poll.Patience):
		t.Fatal("the event did not end the wait")
	}
}
