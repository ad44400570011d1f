package router

// Shard is one active backend shard as membership reports it.
type Shard struct {
	// Name identifies the shard; it is the ring's identity for it, so a
	// shard that restarts under the same name owns the same devices.
	Name string
	// Addr is the shard's link address (host:port) gateways dial.
	Addr string
	// Labels are the shard's gossip labels (e.g. "canary": "true"); canary
	// rules select shards by them. A Ring keeps its own copy.
	Labels map[string]string
}

// Membership is all the router needs from cluster membership: the backend
// shards that are active now (not draining, not suspect). The cluster
// package satisfies it with a small adapter in the server; the router never
// imports cluster.
type Membership interface {
	ActiveShards() []Shard
}

// MembershipFunc adapts a function to Membership.
type MembershipFunc func() []Shard

// ActiveShards calls f.
func (f MembershipFunc) ActiveShards() []Shard { return f() }

var _ Membership = MembershipFunc(nil)
