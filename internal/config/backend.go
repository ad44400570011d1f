package config

import (
	"maps"
	"slices"
	"strings"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/cluster"
)

// BackendConfig maps the shard's configuration onto backend.Config with a
// handler of the app named App among apps, reading the cluster key file, and validates it: every problem, its
// own and backend.Config.Validate's, is in the returned *Problems. The
// gossip keys are returned too, for a reload (SetClusterKeys). Logger is
// left to the caller.
func (c *Backend) BackendConfig(version string, derive KeyDeriver, apps map[string]func() backend.Handler) (backend.Config, [][]byte, error) {
	var p Problems
	var h backend.Handler
	if newHandler, ok := apps[c.App]; ok {
		h = newHandler()
	} else {
		p.Addf("app %q: want one of %s", c.App, strings.Join(slices.Sorted(maps.Keys(apps)), ", "))
	}
	checkLog(&p, c.LogLevel, c.LogFormat)
	if c.Shard == "" {
		p.Addf("shard is required")
	}
	if c.Cluster.Bind == "" {
		p.Addf("cluster.bind (--gossip) is required")
	}
	if c.DrainTimeout <= 0 || c.CloseTimeout <= 0 {
		p.Addf("drain_timeout and close_timeout must be positive")
	}
	var keys [][]byte
	var err error
	if c.ClusterKeyFile == "" {
		p.Addf("cluster_key_file is required")
	} else if keys, err = ReadSecrets(c.ClusterKeyFile); err != nil {
		p.Addf("cluster_key_file: %v", err)
	}
	var token string
	if c.AdminTokenFile != "" {
		if token, err = readToken(c.AdminTokenFile); err != nil {
			p.Addf("admin_token_file: %v", err)
		}
	}
	gossipKeys, linkKeys := derive(keys)
	cc := c.Cluster.cluster(gossipKeys)
	cc.Meta = cluster.Meta{Role: cluster.RoleBackend, Shard: c.Shard, Version: version}
	if c.Shard != "" && c.Cluster.Bind != "" {
		p.AddErr("", cc.Validate())
	}
	cfg := backend.Config{
		Shard: c.Shard, Link: c.Link, ClusterKeys: linkKeys, Handler: h,
		AdminListen: c.AdminListen, AdminToken: token, Version: version,
		ResumeWindow: c.ResumeWindow, MaxOutbox: c.MaxOutbox, MaxLinkQueue: c.MaxLinkQueue,
		MaxMailbox: c.MaxMailbox, Workers: c.Workers, MaxLinks: c.MaxLinks,
		AuthTimeout: c.AuthTimeout, PingInterval: c.PingInterval, LinkTimeout: c.LinkTimeout,
		WriteTimeout: c.WriteTimeout, CheckpointInterval: c.CheckpointInterval,
		MaxCheckpoint: c.MaxCheckpoint, JoinWarning: c.JoinWarning, Labels: c.Labels, Gossip: &cc,
	}
	if cfg.LinkTLS, err = LinkTLS(c.LinkTLSCertFile, c.LinkTLSKeyFile, c.LinkTLSCAFile, true); err != nil {
		p.Addf("%v", err)
	}
	if len(linkKeys) > 0 && c.Shard != "" && h != nil {
		p.AddErr("", cfg.Validate())
	}
	return cfg, gossipKeys, p.Err()
}
