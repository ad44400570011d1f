package router

import (
	"errors"

	"github.com/switchyard-gw/switchyard/protocol"
)

// ErrNoShards is returned by Ring.Owner and every Placer when the ring holds
// no active shard. It is a *protocol.Error with code 503, so the gateway
// answers the device with protocol.CodeOf(err) and keeps no session.
var ErrNoShards = &protocol.Error{Code: protocol.CodeUnavailable, Msg: "no backend shard"}

// Sentinel errors of NewRing and Config.Validate. Compare with errors.Is;
// the returned errors wrap them with the offending value.
var (
	// ErrInvalidConfig: a Config field is out of range.
	ErrInvalidConfig = errors.New("router: invalid config")
	// ErrInvalidShard: a shard has an empty name.
	ErrInvalidShard = errors.New("router: invalid shard")
	// ErrDuplicateShard: two shards share a name. Shard names are the
	// identity of the ring; a duplicate is a misconfiguration that every
	// node would otherwise resolve its own way.
	ErrDuplicateShard = errors.New("router: duplicate shard name")
	// ErrCapacity: the shards cannot hold every partition under the load
	// bound, in practice because there are more shards than partitions
	// (see Config.PartitionCount and NewRing).
	ErrCapacity = errors.New("router: partitions do not fit under the load bound")
	// ErrPlacement: the ring library failed to place the partitions for a
	// reason the up-front checks did not foresee (a recovered panic).
	ErrPlacement = errors.New("router: partition placement failed")
)
