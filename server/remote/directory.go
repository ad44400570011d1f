package remote

import "github.com/switchyard-gw/switchyard/router"

// Directory tells the gateway which backend shard owns a device's session
// and where that shard's link listener is. The cluster wiring builds one
// from gossip and the router's ring (RingDirectory); tests use static ones.
type Directory interface {
	Owner(deviceID string) (shard, linkAddr string, err error)
}

// RingDirectory places devices on the shards of r's current ring.
func RingDirectory(r *router.Router) Directory { return ringDirectory{r} }

type ringDirectory struct{ r *router.Router }

var _ Directory = ringDirectory{}

func (d ringDirectory) Owner(deviceID string) (string, string, error) {
	s, err := d.r.Place(deviceID, nil)
	if err != nil {
		return "", "", ErrNoShard
	}
	return s.Name, s.Addr, nil
}
