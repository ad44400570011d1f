package cluster

// DrainRequest is the user message (SendTo) a gateway sends to a backend
// shard's member to ask the shard to drain and leave, as on SIGTERM: the
// admin API's POST /api/v1/shards/{name}/drain. Gossip is encrypted with
// the cluster's keys, so only a member holding them can send it.
//
// It is the msgpack map {"k": "drain"}, the shape of the backend's other
// cluster messages (forwarded Push and Kick), so the shard reads it on
// the same path; backend's tests check that both sides agree.
var DrainRequest = []byte{0x81, 0xa1, 'k', 0xa5, 'd', 'r', 'a', 'i', 'n'}
