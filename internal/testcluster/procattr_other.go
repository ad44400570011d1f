//go:build !linux

package testcluster

import "syscall"

// procAttr: no parent-death signal outside Linux; t.Cleanup still kills
// every process.
func procAttr() *syscall.SysProcAttr { return nil }
