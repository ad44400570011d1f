//go:build race

package rawio

import "syscall"

// Read is read(2) through package syscall, for the race detector's sake
// (see io3).
func Read(fd int, p []byte) (int, error) {
	n, err := syscall.Read(fd, p)
	return max(n, 0), err
}

// Write is write(2) through package syscall, for the race detector's sake
// (see io3).
func Write(fd int, p []byte) (int, error) {
	n, err := syscall.Write(fd, p)
	return max(n, 0), err
}
