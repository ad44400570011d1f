package server

import (
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/internal/keyedmac"
)

func key(k []byte) *keyedmac.Key { return keyedmac.New(k) }

func keys(ks ...[]byte) []*keyedmac.Key {
	var out []*keyedmac.Key
	for _, k := range ks {
		out = append(out, keyedmac.New(k))
	}
	return out
}

// TestResumeTokenKeyRotation: a token verifies under any configured key,
// so one signed before a rotation (new key first, old key kept) still
// resumes; a token signed with a key the gateway does not hold, for
// another device, expired or cut short does not.
func TestResumeTokenKeyRotation(t *testing.T) {
	oldKey := []byte("resume-key-old-0123456789abcdef")
	newKey := []byte("resume-key-new-0123456789abcdef")
	unknown := []byte("resume-key-unknown-0123456789ab")
	sid := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	now := time.Now()
	exp := now.Add(time.Hour)
	tests := []struct {
		name   string
		tok    []byte
		keys   []*keyedmac.Key
		device string
		ok     bool
	}{
		{"signed with the old key, after rotation", makeResumeToken(key(oldKey), sid, "dev", exp), keys(newKey, oldKey), "dev", true},
		{"signed with the new key", makeResumeToken(key(newKey), sid, "dev", exp), keys(newKey, oldKey), "dev", true},
		{"old key dropped", makeResumeToken(key(oldKey), sid, "dev", exp), keys(newKey), "dev", false},
		{"unknown key", makeResumeToken(key(unknown), sid, "dev", exp), keys(newKey, oldKey), "dev", false},
		{"other device", makeResumeToken(key(oldKey), sid, "dev", exp), keys(newKey, oldKey), "dev2", false},
		{"expired", makeResumeToken(key(oldKey), sid, "dev", now.Add(-time.Second)), keys(newKey, oldKey), "dev", false},
		{"truncated", makeResumeToken(key(oldKey), sid, "dev", exp)[:resumeTokenLen-1], keys(newKey, oldKey), "dev", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := verifyResumeToken(tt.keys, tt.tok, tt.device, now)
			if ok != tt.ok || (ok && got != sid) {
				t.Fatalf("verify = %x, %v; want ok %v", got, ok, tt.ok)
			}
		})
	}
}
