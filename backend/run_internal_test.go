package backend

import (
	"testing"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/vmihailenco/msgpack/v5"
)

// The gateway's drain request (cluster.DrainRequest, fixed bytes) is the
// message this package reads as a drain.
func TestDrainRequestWire(t *testing.T) {
	var f forward
	if err := msgpack.Unmarshal(cluster.DrainRequest, &f); err != nil || f.Kind != forwardDrain {
		t.Fatalf("cluster.DrainRequest decodes to %+v, %v; want kind %q", f, err, forwardDrain)
	}
	b, err := msgpack.Marshal(&forward{Kind: forwardDrain})
	if err != nil || string(b) != string(cluster.DrainRequest) {
		t.Fatalf("forward{drain} encodes to %x, want %x", b, cluster.DrainRequest)
	}
}
