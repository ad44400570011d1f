package config

import (
	"net/netip"

	"github.com/switchyard-gw/switchyard/cluster"
	"github.com/switchyard-gw/switchyard/server"
)

// ServerConfig maps the gateway's configuration onto server.Config, reading its
// secret files, and validates it: every problem, its own and
// server.Config.Validate's, is in the returned *Problems. version goes
// into the gossip metadata; derive turns the cluster key file's lines
// into gossip and link keys. Logger, LevelVar and Reloader are left to
// the caller.
func (c *Gateway) ServerConfig(version string, derive KeyDeriver) (server.Config, error) {
	var p Problems
	cfg := server.Config{
		Listen: c.Listen, AdminListen: c.AdminListen, Node: c.Node,
		Heartbeat: c.Heartbeat, HandshakeTimeout: c.HandshakeTimeout,
		MaxFrame: c.MaxFrame, MaxConns: c.MaxConns, MaxUnread: c.MaxUnread, MaxDetached: c.MaxDetached,
		Rate: c.Rate, RateBurst: c.RateBurst, RateExcessClose: c.RateExcessClose,
		AcceptRate: c.AcceptRate, AcceptBurst: c.AcceptBurst, ShedLag: c.ShedLag,
		AbusePenalty: c.AbusePenalty,
		MaxOutbound:  c.MaxOutbound, CloseLinger: c.CloseLinger, MaxOutbox: c.MaxOutbox, DisconnectRing: c.DisconnectRing,
		ResumeWindow: c.ResumeWindow, ResumeTokenTTL: c.ResumeTokenTTL,
		DrainTimeout: c.DrainTimeout, GoAwayRetry: c.GoAwayRetry, Redirects: c.Redirects,
		LinkHeartbeat: c.LinkHeartbeat, LinkTimeout: c.LinkTimeout, LinksPerShard: c.LinksPerShard,
		MaxLinkQueue: c.MaxLinkQueue, MoveRate: c.MoveRate, MoveBuffer: c.MoveBuffer,
		MoveTimeout: c.MoveTimeout, CheckpointBuffer: c.CheckpointBuffer,
		Canary: c.Canary, Version: version,
		TLSCertFile: c.TLSCertFile, TLSKeyFile: c.TLSKeyFile, TLSClientCAFile: c.TLSClientCAFile,
		TLSClientCertDeviceID: c.TLSClientCertDeviceID,
		TLSHandshakeWorkers:   c.TLSHandshakeWorkers, TLSHandshakeQueue: c.TLSHandshakeQueue,
	}
	cfg.LogLevel = checkLog(&p, c.LogLevel, c.LogFormat)
	if c.MemProfileRate < 0 {
		p.Addf("mem_profile_rate %d: must not be negative", c.MemProfileRate)
	}
	cfg.ProxyProtocolNetworks = parsePrefixes(&p, "proxy_protocol_networks", c.ProxyNetworks)
	var err error
	if cfg.LinkTLS, err = LinkTLS(c.LinkTLSCertFile, c.LinkTLSKeyFile, c.LinkTLSCAFile, false); err != nil {
		p.Addf("%v", err)
	}
	if c.AdminTokenFile != "" {
		if cfg.AdminToken, err = readToken(c.AdminTokenFile); err != nil {
			p.Addf("admin_token_file: %v", err)
		}
	}
	if c.AuthSecretFile != "" {
		if cfg.AuthSecrets, err = ReadSecrets(c.AuthSecretFile); err != nil {
			p.Addf("auth_secret_file: %v", err)
		}
	}
	var keys [][]byte
	if c.ClusterKeyFile != "" {
		if keys, err = ReadSecrets(c.ClusterKeyFile); err != nil {
			p.Addf("cluster_key_file: %v", err)
		}
		cfg.ClusterKeys = keys
	}
	if c.Cluster.Bind != "" {
		if c.ClusterKeyFile == "" {
			p.Addf("cluster.bind is set: cluster_key_file is required (gossip, links and resume tokens)")
		}
		gossipKeys, linkKeys := derive(keys)
		cc := c.Cluster.cluster(gossipKeys)
		cc.Meta = cluster.Meta{Role: cluster.RoleGateway, Version: version}
		p.AddErr("", cc.Validate())
		cfg.Cluster, cfg.LinkKeys = &cc, linkKeys
	}
	p.AddErr("", cfg.Validate())
	return cfg, p.Err()
}

// cluster maps the cluster section onto cluster.Config.
func (g *Gossip) cluster(keys [][]byte) cluster.Config {
	return cluster.Config{
		Name: g.Name, Bind: g.Bind, Advertise: g.Advertise, Seeds: g.Seeds, Keys: keys,
		Insecure: g.Insecure, Label: g.Label,
		Timing: cluster.Timing{ProbeInterval: g.ProbeInterval, ProbeTimeout: g.ProbeTimeout,
			GossipInterval: g.GossipInterval, SuspicionMult: g.SuspicionMult,
			PushPullInterval: g.PushPullInterval, StreamTimeout: g.StreamTimeout},
		UpdateTimeout: g.UpdateTimeout, LeaveTimeout: g.LeaveTimeout,
		JoinBackoff: g.JoinBackoff, JoinMaxWait: g.JoinMaxWait,
		MessageBuffer: g.MessageBuffer, MaxMessage: g.MaxMessage, GoneRetention: g.GoneRetention,
	}
}

// parsePrefixes parses a list of CIDR prefixes ("10.0.0.0/8"), adding a
// problem for each that does not parse.
func parsePrefixes(p *Problems, key string, list []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			p.Addf("%s: %q: want a network in CIDR form, e.g. 10.0.0.0/8 or 192.0.2.7/32", key, s)
			continue
		}
		out = append(out, pfx)
	}
	return out
}
