// Package e2e holds end-to-end tests that run the Go client against a real
// in-process gateway.
package e2e
