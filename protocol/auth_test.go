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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyToken(tt.secrets, tt.id, tt.token, now)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrAuth) {
				t.Fatalf("err = %v, want ErrAuth", err)
			}
		})
	}
}
