package conformance

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// Two secrets, as after a key rotation; the second has characters that
// would change meaning if the gateway base64-decoded it.
const (
	secretA = "conformance-secret-one"
	secretB = "second+secret/with=chars"
)

// makeToken builds "<exp>.<sig>" with sig = base64url_nopad(HMAC-SHA256(
// secret, "<id>.<exp>")).
func makeToken(secret, id string, exp int64) string {
	return strconv.FormatInt(exp, 10) + "." + sign(secret, id+"."+strconv.FormatInt(exp, 10))
}

func sign(secret, msg string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// TestAuth checks the Authentication section and the token step of the
// handshake order.
func TestAuth(t *testing.T) { forEachMode(t, testAuth) }

func testAuth(t *testing.T, m mode) {
	g := startGateway(t, m, gwOptions{authSecrets: []string{secretA, secretB}})
	future := time.Now().Add(time.Hour).Unix()
	for name, secret := range map[string]string{"first": secretA, "second": secretB} {
		t.Run("valid_token_"+name+"_secret", func(t *testing.T) {
			id := newID("auth")
			f := helloFields(id)
			f["token"] = makeToken(secret, id, future)
			d := dial(t, g)
			d.handshake(f)
			d.echo([]byte("authenticated"))
		})
	}
	t.Run("missing_token_401", func(t *testing.T) {
		d := dial(t, g)
		d.send(typeHello, 0, 0, pack(helloFields(newID("auth"))))
		d.expectError(codeAuth)
	})
	for name, tok := range badTokens(future) {
		t.Run(name+"_401", func(t *testing.T) {
			id := newID("auth")
			f := helloFields(id)
			f["token"] = tok(id)
			d := dial(t, g)
			d.send(typeHello, 0, 0, pack(f))
			d.expectError(codeAuth)
		})
	}
	t.Run("order", func(t *testing.T) { testAuthOrder(t, g, future) })
	t.Run("secret_line_used_as_raw_bytes", func(t *testing.T) {
		// "the secret is used as raw bytes (one line ... without the line
		// ending)": a trailing space is part of the secret.
		raw := " spaced secret "
		g2 := startGateway(t, m, gwOptions{authSecrets: []string{raw}})
		id := newID("raw")
		f := helloFields(id)
		f["token"] = makeToken(raw, id, future)
		dial(t, g2).handshake(f)
	})
}

// badTokens maps a case name to a token builder for a device id.
func badTokens(future int64) map[string]func(id string) string {
	exp := strconv.FormatInt(future, 10)
	return map[string]func(string) string{
		"empty_token":              func(string) string { return "" },
		"malformed_no_dot":         func(string) string { return "garbage" },
		"malformed_exp_only":       func(string) string { return exp + "." },
		"malformed_sig_only":       func(id string) string { return "." + sign(secretA, id+"."+exp) },
		"malformed_exp_not_int":    func(id string) string { return "soon." + sign(secretA, id+".soon") },
		"malformed_extra_part":     func(id string) string { return makeToken(secretA, id, future) + ".x" },
		"malformed_padded_sig":     func(id string) string { return makeToken(secretA, id, future) + "=" },
		"malformed_sig_not_base64": func(string) string { return exp + ".***not*base64***" },
		"expired":                  func(id string) string { return makeToken(secretA, id, time.Now().Add(-time.Minute).Unix()) },
		"wrong_secret":             func(id string) string { return makeToken("not-a-configured-secret", id, future) },
		"secret_with_line_end":     func(id string) string { return makeToken(secretA+"\n", id, future) },
		"made_for_another_id":      func(id string) string { return makeToken(secretA, id+"-other", future) },
		"exp_altered":              func(id string) string { return fmt.Sprintf("%d.%s", future+1, sign(secretA, id+"."+exp)) },
		"sig_truncated": func(id string) string {
			tok := makeToken(secretA, id, future)
			return tok[:len(tok)-2]
		},
	}
}

// testAuthOrder checks step 5: structure (400) and size (413) are judged
// before the token (401).
func testAuthOrder(t *testing.T, g *gateway, future int64) {
	cases := []struct {
		name  string
		build func(id string) (map[string]any, int) // fields and padded size (0: no padding)
		code  int64
	}{
		{"missing_v_no_token_400", func(id string) (map[string]any, int) { return map[string]any{"id": id}, 0 }, codeBadRequest},
		{"bad_id_no_token_400", func(string) (map[string]any, int) { return helloFields("bad id"), 0 }, codeBadRequest},
		{"tags_17_wrong_token_400", func(id string) (map[string]any, int) {
			f := helloFields(id)
			f["tags"], f["token"] = tags(maxTags+1, 2), "1.x"
			return f, 0
		}, codeBadRequest},
		{"oversize_no_token_413", func(id string) (map[string]any, int) { return helloFields(id), maxHelloPayload + 1 }, codeTooLarge},
		{"oversize_wrong_token_413", func(id string) (map[string]any, int) {
			f := helloFields(id)
			f["token"] = makeToken("wrong", id, future)
			return f, maxHelloPayload + 200
		}, codeTooLarge},
		{"oversize_valid_token_413", func(id string) (map[string]any, int) {
			f := helloFields(id)
			f["token"] = makeToken(secretA, id, future)
			return f, maxHelloPayload + 1
		}, codeTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, size := c.build(newID("order"))
			payload := pack(f)
			if size > 0 {
				payload = helloPadded(t, f, size)
			}
			d := dial(t, g)
			d.send(typeHello, 0, 0, payload)
			d.expectError(c.code)
		})
	}
}
