package protocol

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// ErrAuth is the single answer to any bad token: missing, malformed,
// expired, wrong, or made for another id (401). The reasons are not told
// apart on the wire.
var ErrAuth = &Error{CodeUnauthorized, "authentication failed"}

// MakeToken returns the auth token "<exp>.<sig>" for device id, valid until
// exp, where sig = base64url_nopad(HMAC-SHA256(secret, "<id>.<exp>")).
func MakeToken(secret []byte, id string, exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	return e + "." + base64.RawURLEncoding.EncodeToString(tokenMAC(secret, id, e))
}

// VerifyToken checks token for id against any of secrets (key rotation),
// comparing MACs in constant time.
func VerifyToken(secrets [][]byte, id, token string, now time.Time) error {
	e, sig, ok := strings.Cut(token, ".")
	if !ok || e == "" || len(e) > 19 {
		return ErrAuth
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || exp < 0 || e[0] == '+' || now.Unix() >= exp {
		return ErrAuth
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return ErrAuth
	}
	match := 0
	for _, s := range secrets {
		match |= subtleEqual(got, tokenMAC(s, id, e))
	}
	if match == 0 {
		return ErrAuth
	}
	return nil
}

func tokenMAC(secret []byte, id, exp string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(exp))
	return m.Sum(nil)
}

func subtleEqual(a, b []byte) int {
	if hmac.Equal(a, b) {
		return 1
	}
	return 0
}
