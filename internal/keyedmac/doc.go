// Package keyedmac computes HMAC-SHA256 under a fixed key, many times,
// without keying a new HMAC for every message.
//
// hmac.New hashes the key into its inner and outer pads and allocates two
// SHA-256 states each time (about 600 bytes of garbage and two block
// compressions): per handshake, for the resume token the gateway signs
// and the one it verifies. A Key keeps keyed HMACs in a pool; Reset brings
// one back to its keyed state from a saved copy. The message is gathered
// in the pooled MAC's own buffer first, so that strings and byte slices
// reach the hash without a conversion that would allocate.
//
//	m := k.Get()
//	m.WriteString("switchyard-resume")
//	m.Write(body)
//	mac := m.Sum(dst) // appends the 32-byte MAC; m goes back to the pool
package keyedmac
