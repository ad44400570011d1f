// Package testpki makes a throwaway certificate authority and
// certificates signed by it, for the tests of TLS (the links between
// gateways and shards): ECDSA P-256 keys, valid for an hour, written as
// PEM files into a test's temporary directory. It is for tests only:
// nothing here is fit to protect anything. A leaf package: the standard
// library only, no goroutines.
package testpki
