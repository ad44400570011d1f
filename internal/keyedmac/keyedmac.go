package keyedmac

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"sync"
)

// Size is the length of a MAC.
const Size = sha256.Size

// A Key computes HMAC-SHA256 under one key. Safe for concurrent use.
type Key struct {
	pool sync.Pool
}

// New returns a Key for key (copied).
func New(key []byte) *Key {
	key = append([]byte(nil), key...)
	k := &Key{}
	k.pool.New = func() any { return &MAC{k: k, h: hmac.New(sha256.New, key)} }
	return k
}

// Get returns a MAC with an empty message.
func (k *Key) Get() *MAC { return k.pool.Get().(*MAC) }

// A MAC gathers one message; Sum hashes it and gives the MAC back to its
// Key. Not for concurrent use, and not to be used after Sum.
type MAC struct {
	k   *Key
	h   hash.Hash
	msg []byte
	sum [Size]byte
}

// Write appends p to the message.
func (m *MAC) Write(p []byte) { m.msg = append(m.msg, p...) }

// WriteString appends s to the message.
func (m *MAC) WriteString(s string) { m.msg = append(m.msg, s...) }

// Sum appends the message's MAC to dst and returns m to its Key's pool.
func (m *MAC) Sum(dst []byte) []byte {
	m.h.Reset()
	m.h.Write(m.msg)
	dst = append(dst, m.h.Sum(m.sum[:0])...)
	// A message far larger than a token's is not kept in the pool.
	if cap(m.msg) > 4<<10 {
		m.msg = nil
	}
	m.msg = m.msg[:0]
	m.k.pool.Put(m)
	return dst
}
