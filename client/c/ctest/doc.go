// Package ctest tests the C device client (client/c) from Go: it compiles
// the C unit tests, the integration program and the example device with
// gcc (-std=c99 -Wall -Wextra -Werror, AddressSanitizer and
// UndefinedBehaviorSanitizer), runs the unit tests against the protocol
// test vectors, and runs the integration scenarios against real
// `switchyard gateway` processes (embedded echo backend): echo and ACKs,
// tokens, heartbeats, resume with redelivery, takeover (409), GOAWAY with
// redirect while a gateway drains, the transport callbacks (cfg.io_*).
//
// TestTLSDevice runs examples/device_tls.c (OpenSSL as the transport)
// through each entry of tlsFronts (tls_test.go): HAProxy terminating TLS in
// front of a plain gateway, with and without a required client
// certificate; the PROXY v2 and native-TLS gateways are one entry each. The
// certificates are made by the test (crypto/x509); a small forwarder in the
// test cuts the TLS connection to check the resume.
//
// The tests live here, not in client/c, because the go tool refuses a
// package directory that holds .c files without cgo.
//
// Without gcc (for TestTLSDevice also OpenSSL's headers or haproxy) the
// tests skip, unless SWITCHYARD_REQUIRE_CC=1 (set by `make test-c`), which
// makes a missing tool a failure.
// SWITCHYARD_CC names another compiler (not CC, which cgo reads). Every
// process a test starts is killed by its PID in t.Cleanup. The package starts no goroutine that outlives a test except
// the ones exec starts to copy a child's output, which end with the child.
package ctest
