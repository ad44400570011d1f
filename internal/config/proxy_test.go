package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// TestProxyNetworks: proxy_protocol_networks reaches server.Config as
// prefixes from the file, the environment (comma-separated) and the
// flags; an entry that is not a CIDR network is a problem naming the key.
func TestProxyNetworks(t *testing.T) {
	g := DefaultGateway()
	err := Load(&g, Source{
		File: write(t, "gw.yaml", "proxy_protocol_networks: [10.0.0.0/8, 127.0.0.1/32]\n"),
		Env:  env(map[string]string{"SWITCHYARD_PROXY_PROTOCOL_NETWORKS": "192.0.2.0/24,2001:db8::/32"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := g.ServerConfig("test", derive)
	want := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	if err != nil || !reflect.DeepEqual(cfg.ProxyProtocolNetworks, want) {
		t.Fatalf("networks %v, %v; want %v", cfg.ProxyProtocolNetworks, err, want)
	}

	g = DefaultGateway()
	if err := Load(&g, Source{Flags: parseFlags(t, "--proxy-protocol-networks", "10.0.0.0/8,10.1.2.3,lb.example")}); err != nil {
		t.Fatal(err)
	}
	_, err = g.ServerConfig("test", derive)
	if err == nil || !strings.Contains(err.Error(), `proxy_protocol_networks: "10.1.2.3": want a network in CIDR form`) ||
		!strings.Contains(err.Error(), `"lb.example"`) {
		t.Fatalf("invalid networks: %v", err)
	}
}
