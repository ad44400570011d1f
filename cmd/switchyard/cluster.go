package main

import "github.com/switchyard-gw/switchyard/cluster"

// clusterKeys derives the gossip and link keys from the lines of the
// cluster key file (cluster.DeriveKeys, shared with backend.Run so that a
// standalone shard derives them the same way).
func clusterKeys(secrets [][]byte) (gossip [][]byte, links [][]byte) {
	return cluster.DeriveKeys(secrets)
}
