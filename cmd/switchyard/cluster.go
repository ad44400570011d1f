package main

import "crypto/sha256"

// clusterKeys derives the keys of a cluster from the lines of its key file:
// gossip encryption wants exactly 32 bytes, so each secret is hashed for it;
// links and resume tokens use the secrets as they are (the first signs,
// every one verifies, so a key can be rotated line by line).
func clusterKeys(secrets [][]byte) (gossip [][]byte, links [][]byte) {
	for _, s := range secrets {
		h := sha256.Sum256(append([]byte("switchyard-gossip\x00"), s...))
		gossip = append(gossip, h[:])
	}
	return gossip, secrets
}
