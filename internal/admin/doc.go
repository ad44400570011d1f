// Package admin holds what the gateway's admin listener (server) and the
// shard's (backend) share: the bearer token check, label values escaped
// as the Prometheus text format wants, and the switchyard_build_info
// series (docs/operations.md "Metrics"). It imports only the standard
// library and starts no goroutine.
package admin
