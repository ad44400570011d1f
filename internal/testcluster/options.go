package testcluster

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/examples/counter"
	"github.com/switchyard-gw/switchyard/examples/echo"
	"github.com/switchyard-gw/switchyard/examples/rooms"
	"github.com/switchyard-gw/switchyard/internal/poll"
	"github.com/switchyard-gw/switchyard/server"
)

// Defaults of the harness.
const (
	DefaultApp          = "echo"                 // example app the shards run
	DefaultGoAwayRetry  = 200 * time.Millisecond // gateways' retry_ms: a stopped gateway lets go fast
	DefaultStopTimeout  = 5 * time.Second        // graceful stops (StopShard, StopGateway, cleanup)
	DefaultConvergeWait = poll.Patience          // Converge and the readiness of NewProcs: generous for a loaded box
	// DefaultLinkTimeout is the in-process members' link read deadline, both
	// sides: the product's 1 s was missed at load 17 (a heartbeat answered
	// late dropped a healthy link and a device reconnected). Detection
	// itself is tested in server and backend, and with the binary's 1 s in
	// TestProcsSilentShardFailover.
	DefaultLinkTimeout = 5 * time.Second
	pollInterval       = 10 * time.Millisecond // WaitConverged and the other polls
)

// apps are the example backends by name, as `switchyard backend --app`
// knows them.
var apps = map[string]func() backend.Handler{
	"echo":    func() backend.Handler { return echo.Handler{} },
	"counter": func() backend.Handler { return counter.Handler{} },
	"rooms":   func() backend.Handler { return rooms.Handler{} },
}

// Options shape a cluster. The zero value is one gateway and no shard
// running the echo app.
type Options struct {
	// Gateways is the number of gateways started.
	Gateways int
	// Shards is the number of backend shards started, named by ShardNames
	// or s0, s1, ...
	Shards int
	// ShardNames, when set, names the first shards (len >= Shards).
	ShardNames []string
	// App is the example app the shards run: echo (default), counter
	// (replies "<shard> <count>") or rooms.
	App string
	// Handler, when set, makes each in-process shard's handler (App is
	// then ignored). Not available with NewProcs.
	Handler func() backend.Handler
	// GatewayConfig, when set, edits each in-process gateway's config
	// before New (i is the gateway's index).
	GatewayConfig func(i int, cfg *server.Config)
	// ShardConfig, when set, edits each in-process shard's config before
	// New.
	ShardConfig func(name string, cfg *backend.Config)
	// GatewayFlags and ShardFlags are extra command-line flags for the
	// processes of NewProcs.
	GatewayFlags, ShardFlags []string
	// OwnDrainSettings leaves out the --drain-timeout 2s and --goaway-retry
	// 200ms that NewProcs gives every gateway (flags win over the file, so
	// a test that sets them in a configuration file and reloads them needs
	// them left out).
	OwnDrainSettings bool
	// Logger receives the in-process members' logs; nil discards them.
	Logger *slog.Logger
}

// shardName is the name of the i-th shard started by New.
func (o *Options) shardName(i int) string {
	if i < len(o.ShardNames) {
		return o.ShardNames[i]
	}
	return fmt.Sprintf("s%d", i)
}

// handler returns the factory of the shards' handler.
func (o *Options) handler() (func() backend.Handler, error) {
	if o.Handler != nil {
		return o.Handler, nil
	}
	app := o.App
	if app == "" {
		app = DefaultApp
	}
	h, ok := apps[app]
	if !ok {
		return nil, fmt.Errorf("testcluster: unknown app %q (want one of %v)", app, appNames())
	}
	return h, nil
}

func appNames() []string {
	var out []string
	for n := range apps {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// keys are a cluster's secrets, random per cluster.
type keys struct {
	link    []byte // authenticates the backend links
	gossip  []byte // encrypts the gossip (AES-256)
	cluster []byte // signs resume tokens, shared by every gateway
}

func newKeys() keys {
	k := keys{link: make([]byte, 32), gossip: make([]byte, 32), cluster: make([]byte, 32)}
	_, _ = rand.Read(k.link)
	_, _ = rand.Read(k.gossip)
	_, _ = rand.Read(k.cluster)
	return k
}
