package main

import (
	"net"
	"testing"

	"github.com/switchyard-gw/switchyard/protocol"
)

func TestSpreadAddr(t *testing.T) {
	s := spread{first: 2, n: 3}
	for i, want := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"} {
		if got := s.addr(i).IP.String(); got != want {
			t.Errorf("addr(%d) = %s, want %s", i, got, want)
		}
	}
	if (spread{}).addr(5) != nil {
		t.Error("no spreading: want a nil source address")
	}
	for _, bad := range []spread{{first: 0, n: 2}, {first: 250, n: 10}, {n: -1}} {
		if bad.validate() == nil {
			t.Errorf("%+v: want a validation error", bad)
		}
	}
	if err := (spread{first: 2, n: 253}).validate(); err != nil {
		t.Errorf("127.0.0.2–254: %v", err)
	}
}

func TestFdShares(t *testing.T) {
	tests := []struct {
		n, per int
		want   []int
	}{
		{15000, 10000, []int{7500, 7500}},
		{15000, 19000, []int{15000}},
		{19001, 9500, []int{6334, 6334, 6333}},
		{10, 0, []int{10}},
		{0, 100, nil},
	}
	for _, tt := range tests {
		got := fdShares(tt.n, tt.per)
		sum := 0
		for i, g := range got {
			sum += g
			if g > tt.per && tt.per > 0 || i >= len(tt.want) || g != tt.want[i] {
				t.Errorf("fdShares(%d, %d) = %v, want %v", tt.n, tt.per, got, tt.want)
				break
			}
		}
		if sum != tt.n && tt.n > 0 || len(got) != len(tt.want) {
			t.Errorf("fdShares(%d, %d) = %v, want %v", tt.n, tt.per, got, tt.want)
		}
	}
}

func TestAppendHello(t *testing.T) {
	for _, token := range []string{"", "1700000000.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmUtc2lnbmF0dXJl"} {
		id := "gwb-abc-0-12345"
		b := appendHello(nil, id, token)
		f, n, err := protocol.Decode(b, protocol.DefaultMaxFrame)
		if err != nil || n != len(b) || f.Type != protocol.TypeHello {
			t.Fatalf("Decode = %+v, %d, %v", f, n, err)
		}
		h, err := protocol.DecodeHello(f.Payload)
		if err != nil || h.V != 1 || h.ID != id || h.Token != token {
			t.Fatalf("DecodeHello = %+v, %v", h, err)
		}
	}
}

func TestSockaddr(t *testing.T) {
	sa, err := sockaddr("127.0.0.1:7401")
	if err != nil || sa.Port != 7401 || net.IP(sa.Addr[:]).String() != "127.0.0.1" {
		t.Fatalf("sockaddr = %+v, %v", sa, err)
	}
	if _, err := sockaddr("[::1]:80"); err == nil {
		t.Error("IPv6: want an error")
	}
}
