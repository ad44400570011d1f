package protocol

import (
	"errors"
	"testing"
	"time"
)

func TestVerifyToken(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k1, k2 := []byte("first-secret"), []byte("second-secret")
	good := MakeToken(k2, "dev-1", now.Add(time.Hour))
	tests := []struct {
		name    string
		secrets [][]byte
		id      string
		token   string
		ok      bool
	}{
		{"good, second key (rotation)", [][]byte{k1, k2}, "dev-1", good, true},
		{"wrong key", [][]byte{k1}, "dev-1", good, false},
		{"other id", [][]byte{k2}, "dev-2", good, false},
		{"expired", [][]byte{k2}, "dev-1", MakeToken(k2, "dev-1", now.Add(-time.Second)), false},
		{"expires now", [][]byte{k2}, "dev-1", MakeToken(k2, "dev-1", now), false},
		{"no dot", [][]byte{k2}, "dev-1", "12345", false},
		{"empty", [][]byte{k2}, "dev-1", "", false},
		{"bad exp", [][]byte{k2}, "dev-1", "x" + good, false},
		{"padded sig", [][]byte{k2}, "dev-1", good + "=", false},
		{"no secrets", nil, "dev-1", good, false},
		{"short sig", [][]byte{k2}, "dev-1", good[:len(good)-1], false},
		{"sig with a byte too many", [][]byte{k2}, "dev-1", good + "AA", false},
		{"sig not base64", [][]byte{k2}, "dev-1", good[:len(good)-1] + "*", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The one-off check and the keyed verifier a gateway keeps
			// must agree on every token, twice in a row (pooled MACs).
			v := NewTokenVerifier(tt.secrets)
			for _, err := range []error{VerifyToken(tt.secrets, tt.id, tt.token, now), v.Verify(tt.id, tt.token, now), v.Verify(tt.id, tt.token, now)} {
				if (err == nil) != tt.ok {
					t.Fatalf("err = %v, want ok=%v", err, tt.ok)
				}
				if err != nil && !errors.Is(err, ErrAuth) {
					t.Fatalf("err = %v, want ErrAuth", err)
				}
			}
		})
	}
}

// FuzzVerifyToken: any token string, however malformed, is refused or
// accepted alike by VerifyToken and a TokenVerifier, without a panic; a
// token MakeToken made for the same id verifies with both.
func FuzzVerifyToken(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	secret := []byte("fuzz-secret")
	f.Add("dev-1", MakeToken(secret, "dev-1", now.Add(time.Hour)))
	f.Add("dev-1", "1900000000.")
	f.Add("", "")
	v := NewTokenVerifier([][]byte{secret})
	f.Fuzz(func(t *testing.T, id, token string) {
		a, b := VerifyToken([][]byte{secret}, id, token, now), v.Verify(id, token, now)
		if (a == nil) != (b == nil) {
			t.Fatalf("VerifyToken %v, TokenVerifier %v", a, b)
		}
		good := MakeToken(secret, id, now.Add(time.Minute))
		if err := v.Verify(id, good, now); err != nil {
			t.Fatalf("a token made for %q refused: %v", id, err)
		}
	})
}
