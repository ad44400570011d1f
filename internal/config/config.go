package config

import (
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/protocol"
	"github.com/switchyard-gw/switchyard/router"
	"github.com/switchyard-gw/switchyard/server"
)

// Struct tags on the settings:
//
//	yaml:"key"     the file key (snake_case); also names the env var and the flag
//	flag:"name"    a flag name other than the derived one (kept from older releases)
//	help:"..."     the flag's usage text
//	reload:"live"  a gateway reload applies it (docs/configuration.md "Reload")
//	secret:"file"  the value is the path of a secret file

// Gateway is the configuration of `switchyard gateway`.
type Gateway struct {
	Listen                string        `yaml:"listen" help:"device listener address (port 0 picks one)"`
	AdminListen           string        `yaml:"admin_listen" flag:"admin" help:"admin HTTP address; - disables"`
	AdminTokenFile        string        `yaml:"admin_token_file" secret:"file" help:"file holding the bearer token the admin API requires (none when empty)"`
	Node                  string        `yaml:"node" help:"node name sent in WELCOME (default: host name)"`
	Heartbeat             time.Duration `yaml:"heartbeat" help:"heartbeat interval, whole seconds (idle close after 3x)"`
	HandshakeTimeout      time.Duration `yaml:"handshake_timeout" reload:"live" help:"time allowed for the first frame (HELLO)"`
	MaxFrame              int           `yaml:"max_frame" help:"largest DATA payload in bytes"`
	MaxConns              int           `yaml:"max_conns" reload:"live" help:"maximum device connections (0: the file limit minus a reserve)"`
	MaxUnread             int           `yaml:"max_unread" help:"bytes of one device's input read and not yet handled; beyond, ERROR 413 and close (0: 16 x (max_frame + 10))"`
	AuthSecretFile        string        `yaml:"auth_secret_file" secret:"file" reload:"live" help:"file of device auth secrets, one per line; auth is on when given"`
	ClusterKeyFile        string        `yaml:"cluster_key_file" secret:"file" reload:"live" help:"file of cluster keys, one per line, at least 16 bytes each: gossip, links, resume tokens (default: a random resume key per process)"`
	TLSCertFile           string        `yaml:"tls_cert_file" reload:"live" help:"PEM certificate (chain) of the device listener; with tls_key_file the listener is TLS-only; re-read at every reload"`
	TLSKeyFile            string        `yaml:"tls_key_file" secret:"file" reload:"live" help:"PEM private key of tls_cert_file; re-read at every reload"`
	TLSClientCAFile       string        `yaml:"tls_client_ca_file" reload:"live" help:"PEM CAs of device certificates: devices must present one, and the HELLO's device id must be the certificate's (else 401); re-read at every reload"`
	TLSClientCertDeviceID string        `yaml:"tls_client_cert_device_id" reload:"live" help:"where a client certificate names its device: cn, san-dns or san-uri"`
	TLSHandshakeWorkers   int           `yaml:"tls_handshake_workers" help:"goroutines running TLS handshakes (0: 4 x GOMAXPROCS)"`
	TLSHandshakeQueue     int           `yaml:"tls_handshake_queue" help:"connections waiting for a TLS handshake worker; beyond, a new one is closed"`
	Rate                  float64       `yaml:"rate" reload:"live" help:"frames/s per device, sustained (negative: unlimited)"`
	RateBurst             int           `yaml:"rate_burst" reload:"live" help:"frames per device at once"`
	RateExcessClose       time.Duration `yaml:"rate_excess_close" reload:"live" help:"a device over its rate this long is closed with 429"`
	AcceptRate            float64       `yaml:"accept_rate" reload:"live" help:"new connections/s for the gateway (negative: unlimited)"`
	AcceptBurst           int           `yaml:"accept_burst" reload:"live" help:"new connections at once"`
	ShedLag               time.Duration `yaml:"shed_lag" reload:"live" help:"expected handshake wait (connections waiting on the gateway over the rate it finishes them) past which new connections get 503 with a retry hint (negative: never shed)"`
	AbusePenalty          time.Duration `yaml:"abuse_penalty" reload:"live" help:"a source (IPv4 address, IPv6 /64) whose connections were closed three times for flooding is refused at accept with 503 and a retry hint until this long after its last flood (negative: off)"`
	MaxOutbound           int           `yaml:"max_outbound" reload:"live" help:"bytes queued for a device beyond its socket buffer; beyond, a slow consumer"`
	CloseLinger           time.Duration `yaml:"close_linger" help:"a connection closing after its last ERROR waits this long for its socket to take it, then as long, half-closed, for the device to close"`
	MaxOutbox             int           `yaml:"max_outbox" help:"bytes of unacknowledged reliable downstream DATA per session"`
	DisconnectRing        int           `yaml:"disconnect_ring" help:"recent disconnects kept for the admin API (GET /api/v1/disconnects, ctl disconnects)"`
	ResumeWindow          time.Duration `yaml:"resume_window" reload:"live" help:"how long a detached session waits for a resume"`
	MaxDetached           int           `yaml:"max_detached" help:"detached sessions held for a resume; beyond, the oldest is forgotten (0: max_conns)"`
	ResumeTokenTTL        time.Duration `yaml:"resume_token_ttl" reload:"live" help:"lifetime of a resume token"`
	DrainTimeout          time.Duration `yaml:"drain_timeout" reload:"live" help:"how long a drain (SIGTERM) may take"`
	GoAwayRetry           time.Duration `yaml:"go_away_retry" flag:"goaway-retry" reload:"live" help:"how long a device is served after GOAWAY (retry_ms)"`
	Redirects             []string      `yaml:"redirects" flag:"redirect" reload:"live" help:"device addresses of other gateways offered in GOAWAY, comma-separated"`
	ProxyNetworks         []string      `yaml:"proxy_protocol_networks" reload:"live" help:"load balancers' networks (CIDR, comma-separated): their connections must begin with a PROXY v1/v2 header, others are closed (empty: PROXY protocol off)"`
	LinkHeartbeat         time.Duration `yaml:"link_heartbeat" help:"a link to a shard that read nothing this long sends a Ping"`
	LinkTimeout           time.Duration `yaml:"link_timeout" help:"a link to a shard that read nothing this long is closed (at least 2x link_heartbeat)"`
	LinksPerShard         int           `yaml:"links_per_shard" help:"links kept to each shard"`
	MaxLinkQueue          int           `yaml:"max_link_queue" help:"bytes queued on one link to a shard; beyond, the shard's circuit opens"`
	MoveRate              float64       `yaml:"move_rate" help:"sessions/s moved after a ring change"`
	MoveBuffer            int           `yaml:"move_buffer" help:"bytes of upstream DATA held per session while it moves"`
	MoveTimeout           time.Duration `yaml:"move_timeout" help:"a move not finished by then fails (the device gets 503)"`
	CheckpointBuffer      int           `yaml:"checkpoint_buffer" help:"bytes of frames kept per session after its last checkpoint"`
	LinkTLSCAFile         string        `yaml:"link_tls_ca_file" help:"CA certificate (PEM) the shards' link certificates must chain to; link TLS is on when given"`
	LinkTLSCertFile       string        `yaml:"link_tls_cert_file" help:"this gateway's link certificate (PEM), for shards that require one (mutual TLS)"`
	LinkTLSKeyFile        string        `yaml:"link_tls_key_file" secret:"file" help:"the key (PEM) of link_tls_cert_file"`
	LogLevel              string        `yaml:"log_level" reload:"live" help:"debug, info, warn or error"`
	LogFormat             string        `yaml:"log_format" help:"text or json"`
	MemProfileRate        int           `yaml:"mem_profile_rate" help:"debug: runtime.MemProfileRate (1 records every allocation; 0 keeps Go's default)"`
	Cluster               Gossip        `yaml:"cluster"`
	Canary                []router.Rule `yaml:"canary" reload:"live" help:"canary rules (file only): a list of {name, match, percent, labels}; docs/operations.md \"Canary roll-out\""`
}

// Backend is the configuration of `switchyard backend`.
type Backend struct {
	App                string            `yaml:"app" help:"example app: echo, counter or rooms"`
	Shard              string            `yaml:"shard" help:"shard name (required, unique in the cluster)"`
	Link               string            `yaml:"link" help:"link listener address gateways connect to (port 0 picks one)"`
	AdminListen        string            `yaml:"admin_listen" flag:"admin" help:"admin HTTP address (/metrics, /healthz, /readyz); - disables"`
	AdminTokenFile     string            `yaml:"admin_token_file" secret:"file" help:"file holding the bearer token /metrics requires (none when empty)"`
	ClusterKeyFile     string            `yaml:"cluster_key_file" secret:"file" reload:"live" help:"file of cluster keys, one per line (required)"`
	ResumeWindow       time.Duration     `yaml:"resume_window" help:"how long a session whose device went away is kept for a resume"`
	MaxOutbox          int               `yaml:"max_outbox" help:"unacknowledged reliable downstream bytes per session"`
	MaxLinkQueue       int               `yaml:"max_link_queue" help:"bytes waiting for one link's writer"`
	MaxMailbox         int               `yaml:"max_mailbox" help:"handler events waiting per session"`
	Workers            int               `yaml:"workers" help:"goroutines running handler calls"`
	MaxLinks           int               `yaml:"max_links" help:"concurrent gateway links"`
	AuthTimeout        time.Duration     `yaml:"auth_timeout" help:"a new link must authenticate within this"`
	PingInterval       time.Duration     `yaml:"ping_interval" help:"a link that read nothing lately sends a Ping this often"`
	LinkTimeout        time.Duration     `yaml:"link_timeout" help:"a link to a gateway that read nothing this long is closed (at least 2x ping_interval)"`
	WriteTimeout       time.Duration     `yaml:"write_timeout" help:"one batched link write may take this long"`
	LinkTLSCertFile    string            `yaml:"link_tls_cert_file" help:"this shard's link certificate (PEM), naming its link address; link TLS is on when given"`
	LinkTLSKeyFile     string            `yaml:"link_tls_key_file" secret:"file" help:"the key (PEM) of link_tls_cert_file"`
	LinkTLSCAFile      string            `yaml:"link_tls_ca_file" help:"CA certificate (PEM): gateways must present a link certificate it signed (mutual TLS); none: any gateway with the cluster key"`
	CheckpointInterval time.Duration     `yaml:"checkpoint_interval" help:"a changed session's state goes to its gateway this often (negative: never)"`
	MaxCheckpoint      int               `yaml:"max_checkpoint" help:"largest checkpoint sent, encoded bytes"`
	DrainTimeout       time.Duration     `yaml:"drain_timeout" help:"how long a drain (SIGTERM) waits for gateways to let go of the shard's sessions"`
	CloseTimeout       time.Duration     `yaml:"close_timeout" help:"how long the close after the drain may take"`
	JoinWarning        time.Duration     `yaml:"join_warning" help:"a shard not in the cluster this long after start logs a WARN with the likely cause, and again as often"`
	Labels             map[string]string `yaml:"labels" help:"shard labels for canary rules, e.g. version=2.1,zone=a"`
	LogLevel           string            `yaml:"log_level" reload:"live" help:"debug, info, warn or error"`
	LogFormat          string            `yaml:"log_format" help:"text or json"`
	Cluster            Gossip            `yaml:"cluster"`
}

// Gossip is the cluster membership of either role (cluster.Config).
type Gossip struct {
	Bind             string        `yaml:"bind" flag:"gossip" help:"gossip address host:port; a gateway joins a cluster only when it is set"`
	Advertise        string        `yaml:"advertise" help:"address others reach this member at, when it differs from bind (NAT)"`
	Seeds            []string      `yaml:"seeds" flag:"join" help:"gossip addresses of members to join, comma-separated"`
	Name             string        `yaml:"name" help:"member name, unique in the cluster (default: host name and a random suffix)"`
	Label            string        `yaml:"label" help:"cluster label; members with another label are ignored"`
	Insecure         bool          `yaml:"insecure" help:"allow unencrypted gossip on a non-loopback address"`
	ProbeInterval    time.Duration `yaml:"probe_interval" help:"time between failure-detector probes"`
	ProbeTimeout     time.Duration `yaml:"probe_timeout" help:"how long a probe waits for an ack"`
	GossipInterval   time.Duration `yaml:"gossip_interval" help:"time between gossip rounds"`
	SuspicionMult    int           `yaml:"suspicion_mult" help:"scales how long a suspect may refute before it is declared dead"`
	PushPullInterval time.Duration `yaml:"push_pull_interval" help:"time between full state syncs"`
	StreamTimeout    time.Duration `yaml:"stream_timeout" help:"bounds gossip TCP dials and reads"`
	UpdateTimeout    time.Duration `yaml:"update_timeout" help:"a metadata update waits this long for its broadcast"`
	LeaveTimeout     time.Duration `yaml:"leave_timeout" help:"leaving the cluster takes at most this"`
	JoinBackoff      time.Duration `yaml:"join_backoff" help:"first pause between join attempts"`
	JoinMaxWait      time.Duration `yaml:"join_max_wait" help:"longest pause between join attempts"`
	MessageBuffer    int           `yaml:"message_buffer" help:"received user messages waiting to be handled"`
	MaxMessage       int           `yaml:"max_message" help:"largest user message, bytes"`
	GoneRetention    time.Duration `yaml:"gone_retention" help:"a gone member stays listed this long"`
}

// DefaultShardLinkTimeout is the binary's shard-side link timeout. The
// SDK's backend.DefaultLinkTimeout (1 s then, 3 s now) was measured too tight for a
// loaded gateway: on the saturated 2-core box a gateway answered Pings
// 1–3 s late (handshakes took 2–3 s, docs/benchmarks.md "Gateway drain and
// crash", "What limits them"; the test harness raised it to 5 s after a
// healthy link was dropped at load 17), and a dropped link detaches every
// session on it. 5 s rides out such stalls; a gateway that really died
// is still noticed by its devices and by gossip within seconds.
const DefaultShardLinkTimeout = 5 * time.Second

// DefaultGateway is the gateway's configuration with nothing set: a
// single gateway with the embedded echo backend on 127.0.0.1:7400.
func DefaultGateway() Gateway {
	return Gateway{
		Listen:                server.DefaultListen,
		AdminListen:           server.DefaultAdminListen,
		Heartbeat:             server.DefaultHeartbeat,
		HandshakeTimeout:      server.DefaultHandshakeTimeout,
		MaxFrame:              protocol.DefaultMaxFrame,
		Rate:                  server.DefaultRate,
		RateBurst:             server.DefaultRateBurst,
		RateExcessClose:       server.DefaultRateExcessClose,
		AcceptRate:            server.DefaultAcceptRate,
		AcceptBurst:           server.DefaultAcceptBurst,
		ShedLag:               server.DefaultShedLag,
		AbusePenalty:          server.DefaultAbusePenalty,
		MaxOutbound:           server.DefaultMaxOutbound,
		CloseLinger:           server.DefaultCloseLinger,
		MaxOutbox:             server.DefaultMaxOutbox,
		DisconnectRing:        server.DefaultDisconnectRing,
		ResumeWindow:          server.DefaultResumeWindow,
		ResumeTokenTTL:        server.DefaultResumeTokenTTL,
		DrainTimeout:          server.DefaultDrainTimeout,
		GoAwayRetry:           server.DefaultGoAwayRetry,
		LinkHeartbeat:         server.DefaultLinkHeartbeat,
		LinkTimeout:           server.DefaultLinkTimeout,
		LinksPerShard:         server.DefaultLinksPerShard,
		MaxLinkQueue:          server.DefaultMaxLinkQueue,
		MoveRate:              server.DefaultMoveRate,
		MoveBuffer:            server.DefaultMoveBuffer,
		MoveTimeout:           server.DefaultMoveTimeout,
		CheckpointBuffer:      server.DefaultCheckpointBuffer,
		TLSClientCertDeviceID: server.CertDeviceCN,
		TLSHandshakeQueue:     server.DefaultTLSHandshakeQueue,
		LogLevel:              "info",
		LogFormat:             "text",
		Cluster:               defaultGossip(""),
	}
}

// DefaultBackend is the shard's configuration with nothing set; Shard,
// ClusterKeyFile and Cluster.Bind must still be given.
func DefaultBackend() Backend {
	return Backend{
		App:                "echo",
		Link:               backend.DefaultLink,
		AdminListen:        DefaultShardAdminListen,
		ResumeWindow:       backend.DefaultResumeWindow,
		MaxOutbox:          backend.DefaultMaxOutbox,
		MaxLinkQueue:       backend.DefaultMaxLinkQueue,
		MaxMailbox:         backend.DefaultMaxMailbox,
		Workers:            backend.DefaultWorkers,
		MaxLinks:           backend.DefaultMaxLinks,
		AuthTimeout:        backend.DefaultAuthTimeout,
		PingInterval:       backend.DefaultPingInterval,
		LinkTimeout:        DefaultShardLinkTimeout,
		WriteTimeout:       backend.DefaultWriteTimeout,
		CheckpointInterval: backend.DefaultCheckpoint,
		MaxCheckpoint:      backend.DefaultMaxCkpt,
		DrainTimeout:       DefaultDrainTimeout,
		CloseTimeout:       DefaultCloseTimeout,
		JoinWarning:        backend.DefaultJoinWarning,
		LogLevel:           "info",
		LogFormat:          "text",
		Cluster:            defaultGossip(""),
	}
}

// DefaultShardAdminListen is the binary's shard admin listener (the SDK's
// default is none): beside the gateway's 7480, so that a gateway and a
// shard run on one host out of the box.
const DefaultShardAdminListen = "127.0.0.1:7680"

// Shard drain and close, as `switchyard backend` always had them.
const (
	DefaultDrainTimeout = 10 * time.Second // gateways let go of the shard's sessions within this
	DefaultCloseTimeout = 5 * time.Second  // then the shard closes within this
)

// defaultGossip is the cluster section with memberlist's LAN timings
// written out, so that --print-config shows what runs.
func defaultGossip(bind string) Gossip {
	lan := memberlist.DefaultLANConfig()
	return Gossip{
		Bind:             bind,
		Label:            cluster.DefaultLabel,
		ProbeInterval:    lan.ProbeInterval,
		ProbeTimeout:     lan.ProbeTimeout,
		GossipInterval:   lan.GossipInterval,
		SuspicionMult:    lan.SuspicionMult,
		PushPullInterval: lan.PushPullInterval,
		StreamTimeout:    lan.TCPTimeout,
		UpdateTimeout:    cluster.DefaultUpdateTimeout,
		LeaveTimeout:     cluster.DefaultLeaveTimeout,
		JoinBackoff:      cluster.DefaultJoinBackoff,
		JoinMaxWait:      cluster.DefaultJoinMaxWait,
		MessageBuffer:    cluster.DefaultMessageBuffer,
		MaxMessage:       cluster.DefaultMaxMessage,
		GoneRetention:    cluster.DefaultGoneRetention,
	}
}
