package config

import (
	"crypto/tls"
	"reflect"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/internal/testpki"
)

// Fields of server.Config, backend.Config and cluster.Config that are not
// settings: objects and hooks the command or the SDK hands in, and what
// the gateway and the SDK fill in themselves.
var notSettings = map[string]bool{
	"Backends": true, "Logger": true, "LevelVar": true, "Reloader": true, "Version": true,
	"Handler": true, "Forwarder": true, "Announcer": true, "Meta": true,
	"Commit": true, "ConfigHash": true, // set by the command from the build and the loaded configuration
}

// TestEveryFieldReachable: every setting of server.Config and
// backend.Config (and of the cluster.Config inside them) is reachable from
// the configuration: changing every key changes every field. A field added
// to those structs without a key here fails this test.
func TestEveryFieldReachable(t *testing.T) {
	files := [2]string{write(t, "a", "secret-one-0123456789\n"), write(t, "b", "secret-two-0123456789\n")}
	g0, g1 := DefaultGateway(), DefaultGateway()
	g0.Cluster.Bind = "127.0.0.1:0"
	g0.AdminTokenFile, g0.AuthSecretFile, g0.ClusterKeyFile = files[0], files[0], files[0]
	changeAll(t, &g1, files[1])
	s0, _ := g0.ServerConfig("v", derive)
	s1, _ := g1.ServerConfig("v", derive)
	sameFields(t, "server.Config", reflect.ValueOf(s0), reflect.ValueOf(s1))

	apps := map[string]func() backend.Handler{"echo": func() backend.Handler { return handler{} }}
	b0, b1 := DefaultBackend(), DefaultBackend()
	b0.Shard, b0.Cluster.Bind, b0.ClusterKeyFile = "a", "127.0.0.1:0", files[0]
	changeAll(t, &b1, files[1])
	b1.App = "echo"
	c0, _, _ := b0.BackendConfig("v", derive, apps)
	c1, _, _ := b1.BackendConfig("v", derive, apps)
	sameFields(t, "backend.Config", reflect.ValueOf(c0), reflect.ValueOf(c1))
}

// changeAll sets every key of cfg to a value other than its default;
// secret files become file.
func changeAll(t *testing.T, cfg any, file string) {
	t.Helper()
	root := reflect.ValueOf(cfg).Elem()
	tlsFiles := linkTLSFiles(t)
	for _, k := range Keys(cfg) {
		v := k.field(root)
		switch {
		case tlsFiles[k.Path] != "": // PEM files that load
			v.SetString(tlsFiles[k.Path])
		case k.Secret:
			v.SetString(file)
		case k.Type == reflect.TypeFor[time.Duration]():
			v.SetInt(v.Int() + int64(7*time.Millisecond))
		case k.Type.Kind() == reflect.String:
			v.SetString("127.0.0.1:1")
		case k.Type.Kind() == reflect.Int:
			v.SetInt(v.Int() + 3)
		case k.Type.Kind() == reflect.Float64:
			v.SetFloat(v.Float() + 0.5)
		case k.Type.Kind() == reflect.Bool:
			v.SetBool(!v.Bool())
		case k.Path == "proxy_protocol_networks": // CIDR, not an address
			v.Set(reflect.ValueOf([]string{"10.0.0.0/8"}))
		case k.Type.Kind() == reflect.Slice && k.Type.Elem().Kind() == reflect.String:
			v.Set(reflect.ValueOf([]string{"127.0.0.1:2"}))
		case k.Type.Kind() == reflect.Slice: // a list of structures (file only)
			v.Set(reflect.Append(v, reflect.Zero(k.Type.Elem())))
		case k.Type.Kind() == reflect.Map:
			v.Set(reflect.ValueOf(map[string]string{"k": "v"}))
		default:
			t.Fatalf("%s: no way to change a %v here", k.Path, k.Type)
		}
	}
	root.FieldByName("LogLevel").SetString("debug") // a valid level other than the default
}

// sameFields fails for every field of a and b (structs of one type) that
// is a setting and did not change.
func sameFields(t *testing.T, where string, a, b reflect.Value) {
	t.Helper()
	for i := range a.NumField() {
		f := a.Type().Field(i)
		if notSettings[f.Name] {
			continue
		}
		fa, fb := a.Field(i), b.Field(i)
		switch {
		case fa.Type() == reflect.TypeFor[*tls.Config]():
			// Built from the link_tls_* files, or nil: a whole (the
			// library's own fields are not settings of ours).
			if fa.IsNil() == fb.IsNil() {
				t.Errorf("%s.%s is not reachable from the configuration: no key changes it", where, f.Name)
			}
		case fa.Kind() == reflect.Pointer && fa.Type().Elem().Kind() == reflect.Struct:
			if fa.IsNil() || fb.IsNil() {
				t.Errorf("%s.%s: nil", where, f.Name)
				continue
			}
			sameFields(t, where+"."+f.Name, fa.Elem(), fb.Elem())
		case fa.Kind() == reflect.Struct && fa.Type() != reflect.TypeFor[time.Duration]():
			sameFields(t, where+"."+f.Name, fa, fb)
		case reflect.DeepEqual(fa.Interface(), fb.Interface()):
			t.Errorf("%s.%s is not reachable from the configuration: no key changes it", where, f.Name)
		}
	}
}

// linkTLSFiles are the link_tls_* keys set to a CA and a certificate it
// signed, which both roles load.
func linkTLSFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.New(t, dir, "ca")
	cert, key := ca.Issue(t, dir, "node", "127.0.0.1")
	return map[string]string{"link_tls_cert_file": cert, "link_tls_key_file": key, "link_tls_ca_file": ca.File}
}
