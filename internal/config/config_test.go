package config

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/backend"
	"github.com/switchyard-gw/switchyard/internal/leakcheck"
	"github.com/switchyard-gw/switchyard/router"
)

func TestMain(m *testing.M) { leakcheck.Main(m, nil) }

// derive is a stand-in KeyDeriver: the mapping only passes its results on.
func derive(s [][]byte) (gossip, links [][]byte) {
	for _, k := range s {
		h := sha256.Sum256(k)
		gossip = append(gossip, h[:])
	}
	return gossip, s
}

func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// parseFlags binds the gateway's flags and parses args.
func parseFlags(t *testing.T, args ...string) *Flags {
	t.Helper()
	def := DefaultGateway()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fl := BindFlags(fs, &def)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fl
}

// TestPrecedence: a key set in the file, the environment and the flags
// takes the flag's value; one set in file and environment the
// environment's; one only in the file the file's; the rest the defaults.
func TestPrecedence(t *testing.T) {
	file := write(t, "gw.yaml", "rate: 10\nrate_burst: 20\naccept_rate: 30\ncluster:\n  seeds: [a:1]\n  probe_interval: 2s\n")
	g := DefaultGateway()
	err := Load(&g, Source{
		File:  file,
		Env:   env(map[string]string{"SWITCHYARD_RATE": "11", "SWITCHYARD_RATE_BURST": "21", "SWITCHYARD_CLUSTER_SEEDS": "b:1,c:1"}),
		Flags: parseFlags(t, "--rate", "12", "--join", "d:1"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultGateway()
	want.Rate, want.RateBurst, want.AcceptRate = 12, 21, 30
	want.Cluster.Seeds, want.Cluster.ProbeInterval = []string{"d:1"}, 2*time.Second
	if !reflect.DeepEqual(g, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", g, want)
	}
}

// TestProblemsAll: every problem is named, from every source and from the
// cross-field validation, not just the first.
func TestProblemsAll(t *testing.T) {
	file := write(t, "gw.yaml", "rat: 10\nheartbeat: 30\nlink_timeout: 100ms\nlog_level: loud\n")
	g := DefaultGateway()
	var p Problems
	p.AddErr("", Load(&g, Source{File: file,
		Env:   env(map[string]string{"SWITCHYARD_MAX_CONNS": "many"}),
		Flags: parseFlags(t, "--accept-rate", "fast", "--auth-secret-file", "/nonexistent/secrets")}))
	_, err := g.ServerConfig("test", derive)
	p.AddErr("", err)
	text := p.Err().Error()
	for _, want := range []string{
		"field rat not found", "line 2", // unknown key, a bare number for a duration
		"SWITCHYARD_MAX_CONNS (environment): want an integer",
		"--accept-rate: want a number",
		"auth_secret_file:", "log_level \"loud\"",
		"link timeout 100ms: want at least twice",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("problems lack %q:\n%s", want, text)
		}
	}
	if len(p.List) < 7 {
		t.Errorf("%d problems, want at least 7:\n%s", len(p.List), text)
	}
}

// TestSecretsFromFiles: the secrets reach server.Config from their files;
// the printed configuration shows the paths and none of the contents.
func TestSecretsFromFiles(t *testing.T) {
	token := "admin-token-0123456789"
	auth := "device-secret-abcdef"
	key := "cluster-key-0123456789abcdef"
	g := DefaultGateway()
	g.AdminTokenFile = write(t, "admin.token", token+"\n")
	g.AuthSecretFile = write(t, "auth", auth+"\n\n")
	g.ClusterKeyFile = write(t, "keys", key+"\n")
	g.Cluster.Bind = "127.0.0.1:0"
	cfg, err := g.ServerConfig("test", derive)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminToken != token || len(cfg.AuthSecrets) != 1 || string(cfg.AuthSecrets[0]) != auth ||
		string(cfg.ClusterKeys[0]) != key || string(cfg.LinkKeys[0]) != key || len(cfg.Cluster.Keys) != 1 {
		t.Fatalf("secrets not mapped: %+v", cfg)
	}
	out, err := Print(&g)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{token, auth, key} {
		if bytes.Contains(out, []byte(secret)) {
			t.Errorf("printed configuration holds a secret:\n%s", out)
		}
	}
	if !bytes.Contains(out, []byte(g.AdminTokenFile)) || !bytes.Contains(out, []byte("heartbeat: 30s")) {
		t.Errorf("printed configuration lacks the token's path or a duration:\n%s", out)
	}
	// No key may hold a secret value: every key whose name says secret,
	// token or key names a file.
	for _, cfg := range []any{&Gateway{}, &Backend{}} {
		for _, k := range Keys(cfg) {
			last := k.Path[strings.LastIndex(k.Path, ".")+1:]
			if (strings.Contains(last, "secret") || strings.Contains(last, "token") || strings.HasSuffix(last, "key")) &&
				!strings.Contains(last, "ttl") && !k.Secret {
				t.Errorf("%s looks like a secret value: make it a file (secret:\"file\")", k.Path)
			}
		}
	}
}

// TestPrintLoadsBack: what --print-config prints loads back as the same
// configuration.
func TestPrintLoadsBack(t *testing.T) {
	g := DefaultGateway()
	g.Rate, g.Redirects, g.Cluster.Seeds = 7, []string{"x:1"}, []string{"y:1"}
	g.ProxyNetworks = []string{"10.0.0.0/8"} // lists set: an empty one prints as [] and loads back empty, not nil
	g.Canary = []router.Rule{{Name: "v21", Match: map[string]string{"model": "x1"}, Percent: 10, Labels: map[string]string{"version": "2.1"}}}
	out, err := Print(&g)
	if err != nil {
		t.Fatal(err)
	}
	back := DefaultGateway()
	if err := Load(&back, Source{File: write(t, "p.yaml", string(out))}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, g) {
		t.Fatalf("got\n%+v\nwant\n%+v", back, g)
	}
}

// TestBackendConfig: the shard's settings reach backend.Config, and a
// missing shard name, key file or gossip address and an unknown app are
// all named.
func TestBackendConfig(t *testing.T) {
	apps := map[string]func() backend.Handler{"echo": func() backend.Handler { return nil }}
	b := DefaultBackend()
	b.App = "nope"
	_, _, err := b.BackendConfig("test", derive, apps)
	if err == nil {
		t.Fatal("no problem")
	}
	for _, want := range []string{`app "nope"`, "shard is required", "cluster_key_file is required", "cluster.bind"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems lack %q:\n%v", want, err)
		}
	}
	b = DefaultBackend()
	b.Shard, b.ClusterKeyFile, b.Cluster.Bind = "a", write(t, "k", "cluster-key-0123456789\n"), "127.0.0.1:0"
	b.Workers, b.LinkTimeout = 3, 7*time.Second
	apps["echo"] = func() backend.Handler { return handler{} }
	cfg, gossip, err := b.BackendConfig("test", derive, apps)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Shard != "a" || cfg.Workers != 3 || cfg.LinkTimeout != 7*time.Second || len(gossip) != 1 ||
		cfg.Gossip == nil || cfg.Gossip.Bind != "127.0.0.1:0" {
		t.Fatalf("not mapped: %+v", cfg)
	}
}

type handler struct{ backend.Handler }

// TestDiff: live and restart keys are told apart.
func TestDiff(t *testing.T) {
	a, b := DefaultBackend(), DefaultBackend()
	b.LogLevel, b.Workers, b.Cluster.Seeds = "debug", 9, []string{"z:1"}
	live, restart := Diff(&a, &b)
	if !reflect.DeepEqual(live, []string{"log_level"}) || !reflect.DeepEqual(restart, []string{"workers", "cluster.seeds"}) {
		t.Fatalf("live %v restart %v", live, restart)
	}
}

// TestDocListsEveryKey: docs/configuration.md has one row per key of each
// role, with its environment variable, flag, default and reload class, as
// the structs here say; a key added, renamed or given a new default
// without the doc fails here (the wanted rows are printed).
func TestDocListsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	g, b := DefaultGateway(), DefaultBackend()
	for _, c := range []struct {
		heading string
		cfg     any
	}{{"### Gateway", &g}, {"### Backend shard", &b}} {
		got := docRows(string(doc), c.heading)
		want := tableRows(c.cfg)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("docs/configuration.md %q disagrees with the config structs; want the rows:\n%s",
				c.heading, strings.Join(want, "\n"))
		}
	}
}

// docRows are the key rows of the table after heading.
func docRows(doc, heading string) []string {
	_, rest, ok := strings.Cut(doc, "\n"+heading)
	if !ok {
		return nil
	}
	var rows []string
	for _, line := range strings.Split(rest, "\n")[1:] {
		if strings.HasPrefix(line, "#") {
			break
		}
		if strings.HasPrefix(line, "| `") {
			rows = append(rows, line)
		}
	}
	return rows
}

// tableRows are the rows the doc must hold for cfg.
func tableRows(cfg any) []string {
	root := reflect.ValueOf(cfg).Elem()
	var rows []string
	for _, k := range Keys(cfg) {
		def := text(k.field(root))
		if def == "" {
			def = "–"
		}
		r := "restart"
		if k.Live {
			r = "live"
		}
		env, fl := "–", "–"
		if k.Env != "" {
			env = "`" + k.Env + "`"
		}
		if k.Flag != "" {
			fl = "`--" + k.Flag + "`"
		}
		rows = append(rows, "| `"+k.Path+"` | "+env+" | "+fl+" | `"+def+"` | "+r+" |")
	}
	return rows
}

// TestDocExamplesLoad: the example files in docs/configuration.md load
// (known keys, right types).
func TestDocExamplesLoad(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(doc), "```yaml\n")[1:]
	if len(blocks) < 2 {
		t.Fatalf("%d yaml examples, want the gateway's and the shard's", len(blocks))
	}
	for _, b := range blocks {
		body, _, _ := strings.Cut(b, "```")
		var cfg any = &Gateway{}
		if strings.Contains(body, "\nshard:") {
			cfg = &Backend{}
		}
		if err := Load(cfg, Source{File: write(t, "example.yaml", body)}); err != nil {
			t.Errorf("example does not load: %v\n%s", err, body)
		}
	}
}
