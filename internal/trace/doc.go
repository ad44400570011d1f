// Package trace is the per-device tracing table that gateways and backend
// shards share: `switchyard ctl trace DEVICE` asks one gateway, which
// spreads the request through gossip (Request, a cluster message), and
// every member then logs that device's connection events, frame headers
// and placement decisions, tagged with the trace id, until the trace
// expires.
//
// The frame path pays one atomic load (Table.Any) while no trace is
// active: that is the whole cost of tracing when it is off. Expiry is
// checked on use, so no goroutine or timer runs per trace; the table is
// bounded (MaxTraces) so a flood of requests cannot grow it.
package trace
