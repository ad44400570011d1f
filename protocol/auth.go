package protocol

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard-gw/switchyard/internal/keyedmac"
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
// comparing MACs in constant time. A caller verifying many tokens against
// the same secrets keeps a TokenVerifier instead of keying them anew.
func VerifyToken(secrets [][]byte, id, token string, now time.Time) error {
	return NewTokenVerifier(secrets).Verify(id, token, now)
}

// A TokenVerifier checks tokens against a fixed set of secrets, keyed
// once: keying an HMAC per secret and per token is what a gateway would
// otherwise pay at every handshake. Safe for concurrent use.
type TokenVerifier struct {
	keys []*keyedmac.Key
}

// NewTokenVerifier returns a verifier for secrets (any of them verifies).
func NewTokenVerifier(secrets [][]byte) *TokenVerifier {
	v := &TokenVerifier{}
	for _, s := range secrets {
		v.keys = append(v.keys, keyedmac.New(s))
	}
	return v
}

// Verify checks token for id against any of the verifier's secrets,
// comparing MACs in constant time; the answer to any bad token is ErrAuth.
func (v *TokenVerifier) Verify(id, token string, now time.Time) error {
	e, sig, ok := parseToken(token, now)
	if !ok {
		return ErrAuth
	}
	match := 0
	var mac [keyedmac.Size]byte
	for _, k := range v.keys {
		m := k.Get()
		m.WriteString(id)
		m.WriteString(".")
		m.WriteString(e)
		match |= subtleEqual(sig[:], m.Sum(mac[:0]))
	}
	if match == 0 {
		return ErrAuth
	}
	return nil
}

// parseToken splits token into its expiry (digits, not yet past at now)
// and its signature, decoded; ok is false for any malformed or expired
// token.
func parseToken(token string, now time.Time) (exp string, sig [sha256.Size]byte, ok bool) {
	e, s, ok := strings.Cut(token, ".")
	if !ok || e == "" || len(e) > 19 {
		return "", sig, false
	}
	x, err := strconv.ParseInt(e, 10, 64)
	if err != nil || x < 0 || e[0] == '+' || now.Unix() >= x {
		return "", sig, false
	}
	if base64.RawURLEncoding.DecodedLen(len(s)) != sha256.Size {
		return "", sig, false
	}
	var src [44]byte // copied, not converted: a conversion this long would allocate
	n, err := base64.RawURLEncoding.Decode(sig[:], src[:copy(src[:], s)])
	if err != nil || n != sha256.Size {
		return "", sig, false
	}
	return e, sig, true
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
