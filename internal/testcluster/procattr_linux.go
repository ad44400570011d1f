package testcluster

import "syscall"

// procAttr kills a child when the test binary dies, so that a crashed or
// killed test leaves no process behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
