//go:build !race

package rawio

import "syscall"

// Read is read(2) on a non-blocking fd, as a raw system call.
func Read(fd int, p []byte) (int, error) { return io3(syscall.SYS_READ, fd, p) }

// Write is write(2) on a non-blocking fd, as a raw system call.
func Write(fd int, p []byte) (int, error) { return io3(syscall.SYS_WRITE, fd, p) }
