package server

import (
	"crypto/hmac"
	"encoding/binary"
	"time"

	"github.com/switchyard-gw/switchyard/internal/keyedmac"
)

// Resume tokens let any gateway holding the cluster keys verify, without a
// lookup, that a device may resume a session (the first key signs, any
// verifies: keys rotate):
//
//	0    1        17        25        41
//	| v=1 | sid (16) | exp (8) | mac (16) |
//
// mac = HMAC-SHA256(key, "switchyard-resume" | v | sid | exp | device id),
// truncated to 16 bytes; exp is unix seconds, big-endian. The device id is
// bound by the MAC, not carried.
const (
	resumeVersion  = 1
	resumeTokenLen = 41
	resumeMACLen   = 16
)

// appendResumeMAC appends body's MAC under k, for device.
func appendResumeMAC(dst []byte, k *keyedmac.Key, body []byte, device string) []byte {
	m := k.Get()
	m.WriteString("switchyard-resume")
	m.Write(body)
	m.WriteString(device)
	var sum [keyedmac.Size]byte
	return append(dst, m.Sum(sum[:0])[:resumeMACLen]...)
}

// makeResumeToken returns a token for session sid of device, valid until exp.
func makeResumeToken(key *keyedmac.Key, sid [16]byte, device string, exp time.Time) []byte {
	b := make([]byte, 0, resumeTokenLen)
	b = append(b, resumeVersion)
	b = append(b, sid[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(exp.Unix()))
	return appendResumeMAC(b, key, b, device)
}

// verifyResumeToken returns the session id a valid token names. Any of
// keys verifies (every one is tried, in constant time each), so that a
// token signed before a key rotation still resumes.
func verifyResumeToken(keys []*keyedmac.Key, tok []byte, device string, now time.Time) (sid [16]byte, ok bool) {
	if len(tok) != resumeTokenLen || tok[0] != resumeVersion {
		return sid, false
	}
	body := tok[:resumeTokenLen-resumeMACLen]
	var mac [resumeMACLen]byte
	for _, k := range keys {
		ok = hmac.Equal(tok[len(body):], appendResumeMAC(mac[:0], k, body, device)) || ok
	}
	if !ok {
		return sid, false
	}
	if int64(binary.BigEndian.Uint64(body[17:])) <= now.Unix() {
		return sid, false
	}
	copy(sid[:], body[1:17])
	return sid, true
}
