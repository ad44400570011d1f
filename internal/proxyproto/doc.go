// Package proxyproto parses the PROXY protocol header (versions 1 and 2,
// https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt) that a load
// balancer sends at the start of a TCP connection to say who the client
// really is.
//
// Parse is incremental: it is given the bytes buffered so far and says
// whether they hold a whole header, need more, or cannot be one. It
// decides as early as the bytes allow (the first byte that is neither
// 'P' nor '\r' fails at once), so that a peer that does not speak the
// PROXY protocol is refused on its first packet, not at a timeout.
//
// Invariants: Parse never panics and never reads past the header's own
// length; every malformed input is an error; a header is at most
// MaxV1Header (v1) or MaxV2Header (v2) bytes, so a peer cannot make the
// caller buffer more than that. The happy path of version 2 allocates
// nothing. TLVs are checked for structure (each fits in the header) and
// otherwise skipped. The package is a leaf: the standard library only,
// no goroutines.
package proxyproto
