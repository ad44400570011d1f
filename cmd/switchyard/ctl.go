package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/switchyard-gw/switchyard/server"
)

// `switchyard ctl` calls a gateway's admin API (docs/operations.md,
// "switchyard ctl") and prints tables, or the API's JSON with -o json.
// Exit status: 0 done, 1 the API refused or could not be reached, 2 a
// usage mistake.

// ctlTokenEnv names the token file when --token-file is not given.
const ctlTokenEnv = "SWITCHYARD_ADMIN_TOKEN_FILE"

// ctl exit statuses.
const (
	ctlOK       = 0
	ctlAPIError = 1
	ctlUsage    = 2
)

// ctl is one invocation: the global flags and where it writes.
type ctl struct {
	ctx       context.Context // bounds every request (--timeout)
	admin     string
	tokenFile string
	output    string
	timeout   time.Duration
	stdout    io.Writer
	stderr    io.Writer
	token     string
}

// ctlCommand is one subcommand: its arguments, its flags, what it does.
type ctlCommand struct {
	args  string // usage of the positional arguments
	help  string
	nargs int
	flags func(fs *flag.FlagSet) func(c *ctl, args []string) error
}

// usageError is a mistake on the command line (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func ctlCommands() map[string]ctlCommand {
	noFlags := func(run func(c *ctl, args []string) error) func(*flag.FlagSet) func(*ctl, []string) error {
		return func(*flag.FlagSet) func(*ctl, []string) error { return run }
	}
	return map[string]ctlCommand{
		"info":    {help: "this gateway: version, commit, uptime, config hash, addresses, state", flags: noFlags((*ctl).info)},
		"members": {help: "the cluster's members as this gateway's gossip sees them", flags: noFlags((*ctl).members)},
		"ring":    {help: "the ring: fingerprint, shards with state, labels and partitions", flags: noFlags((*ctl).ring)},
		"sessions": {help: "the sessions on this gateway, by device id", flags: func(fs *flag.FlagSet) func(*ctl, []string) error {
			limit := fs.Int("limit", 100, "sessions per page (1..1000)")
			after := fs.String("after", "", "start after this device `id` (the next page)")
			return func(c *ctl, _ []string) error { return c.sessions(*limit, *after) }
		}},
		"session": {args: "DEVICE", nargs: 1, help: "where a device is in the cluster: gateway, shard, epoch, since, last disconnect", flags: noFlags((*ctl).session)},
		"trace": {args: "DEVICE", nargs: 1, help: "log one device's events, frame headers and placement on every gateway and shard for a while",
			flags: func(fs *flag.FlagSet) func(*ctl, []string) error {
				d := fs.Duration("for", time.Minute, "how long the trace lasts (at most 1h)")
				return func(c *ctl, args []string) error { return c.trace(args[0], *d) }
			}},
		"disconnects": {help: "this gateway's recent disconnects, newest first",
			flags: func(fs *flag.FlagSet) func(*ctl, []string) error {
				device := fs.String("device", "", "only this device `id`")
				limit := fs.Int("limit", 100, "at most this many")
				return func(c *ctl, _ []string) error { return c.disconnects(*device, *limit) }
			}},
		"kick": {args: "DEVICE", nargs: 1, help: "close a device's connection with ERROR (409: it does not come back; 503: it retries)",
			flags: func(fs *flag.FlagSet) func(*ctl, []string) error {
				code := fs.Int("code", 409, "ERROR code the device gets: 409 or 503")
				reason := fs.String("reason", "", "text added to the ERROR message")
				return func(c *ctl, args []string) error { return c.kick(args[0], *code, *reason) }
			}},
		"drain":       {help: "drain this gateway (as SIGTERM): GOAWAY to its devices, then it exits", flags: noFlags((*ctl).drain)},
		"drain-shard": {args: "NAME", nargs: 1, help: "drain a backend shard: its sessions move away with their state, then it exits", flags: noFlags((*ctl).drainShard)},
		"reload":      {help: "reload the gateway's configuration file", flags: noFlags((*ctl).reload)},
	}
}

// runCtl runs `switchyard ctl` and returns its exit status.
func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &ctl{stdout: stdout, stderr: stderr}
	cmds := ctlCommands()
	fs := c.flagSet("ctl")
	fs.Usage = func() { printCtlUsage(stderr, fs, cmds) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ctlOK
		}
		return ctlUsage
	}
	if fs.NArg() == 0 {
		printCtlUsage(stderr, fs, cmds)
		return ctlUsage
	}
	name := fs.Arg(0)
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "switchyard ctl: unknown command %q\n", name)
		printCtlUsage(stderr, fs, cmds)
		return ctlUsage
	}
	sub := c.flagSet("ctl " + name) // the global flags work after the command too
	run := cmd.flags(sub)
	sub.Usage = func() {
		fmt.Fprintf(stderr, "usage: switchyard ctl %s [flags] %s\n\n%s\n\nflags:\n", name, cmd.args, cmd.help)
		sub.PrintDefaults()
	}
	pos, err := parseInterleaved(sub, fs.Args()[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ctlOK
		}
		return ctlUsage
	}
	err = c.check(len(pos), cmd.nargs)
	if err == nil {
		err = c.loadToken()
	}
	if err == nil {
		var cancel context.CancelFunc
		c.ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
		err = run(c, pos)
	}
	var ue usageError
	switch {
	case err == nil:
		return ctlOK
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "switchyard ctl:", err)
		sub.Usage()
		return ctlUsage
	default:
		fmt.Fprintln(stderr, "switchyard ctl:", err)
		return ctlAPIError
	}
}

// parseInterleaved parses flags placed before, between or after the
// positional arguments (`ctl kick DEVICE --code 503`), which flag.Parse
// alone stops at, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func (c *ctl) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.StringVar(&c.admin, "admin", orDefault(c.admin, server.DefaultAdminListen), "admin API `address` of the gateway (host:port)")
	fs.StringVar(&c.tokenFile, "token-file", c.tokenFile, "`file` holding the admin bearer token (default $"+ctlTokenEnv+")")
	fs.StringVar(&c.output, "o", orDefault(c.output, "table"), "output: table or json")
	fs.DurationVar(&c.timeout, "timeout", cmpDuration(c.timeout, 10*time.Second), "how long to wait for the API")
	return fs
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func cmpDuration(v, d time.Duration) time.Duration {
	if v == 0 {
		return d
	}
	return v
}

func printCtlUsage(w io.Writer, fs *flag.FlagSet, cmds map[string]ctlCommand) {
	fmt.Fprint(w, "usage: switchyard ctl [flags] <command> [args]\n\ncommands:\n")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, n := range names {
		fmt.Fprintf(tw, "  %s %s\t%s\n", n, cmds[n].args, cmds[n].help)
	}
	tw.Flush()
	fmt.Fprint(w, "\nflags (before or after the command):\n")
	fs.PrintDefaults()
}

// check validates the arguments and the global flags.
func (c *ctl) check(got, want int) error {
	switch {
	case got != want:
		return usageError{fmt.Sprintf("want %d argument(s), got %d", want, got)}
	case c.output != "table" && c.output != "json":
		return usageError{fmt.Sprintf("-o %q: want table or json", c.output)}
	case c.timeout <= 0:
		return usageError{"--timeout must be positive"}
	}
	if _, _, err := net.SplitHostPort(c.admin); err != nil {
		return usageError{fmt.Sprintf("--admin %q: want host:port", c.admin)}
	}
	return nil
}

// loadToken reads the token file (--token-file, else the environment).
func (c *ctl) loadToken() error {
	path := c.tokenFile
	if path == "" {
		path = os.Getenv(ctlTokenEnv)
	}
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if c.token = strings.TrimSpace(line); c.token == "" {
		return fmt.Errorf("admin token: %s is empty", path)
	}
	return nil
}

// call sends one API request and decodes a 2xx answer into out (when not
// nil). With -o json the body is printed as well, indented. Errors say
// what to check: the address when nothing answers, the token on 401.
func (c *ctl) call(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(c.ctx, method, "http://"+c.admin+path, rd)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("no admin API at %s (connection refused): is the gateway running, and is --admin its admin address?", c.admin)
		}
		return fmt.Errorf("admin API at %s: %w", c.admin, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API at %s: %w", c.admin, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("unauthorized (401): the admin token is missing or wrong; give the gateway's token with --token-file or $%s", ctlTokenEnv)
	}
	if resp.StatusCode/100 != 2 {
		var e server.AdminError
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	if c.output == "json" {
		var buf bytes.Buffer
		if json.Indent(&buf, raw, "", "  ") != nil {
			buf.Reset()
			buf.Write(raw)
		}
		fmt.Fprintln(c.stdout, strings.TrimSpace(buf.String()))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: unreadable answer: %w", method, path, err)
		}
	}
	return nil
}

// table prints rows through a tabwriter, in table mode only.
func (c *ctl) table(rows [][]string) {
	if c.output != "table" {
		return
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func (c *ctl) info(_ []string) error {
	var n server.NodeInfo
	if err := c.call(http.MethodGet, "/api/v1/info", nil, &n); err != nil {
		return err
	}
	c.table([][]string{
		{"name", n.Name}, {"role", n.Role}, {"version", n.Version}, {"commit", n.Commit}, {"go", n.GoVersion},
		{"config hash", dash(n.ConfigHash)},
		{"uptime", (time.Duration(n.UptimeSeconds * float64(time.Second))).Round(time.Second).String()},
		{"started", n.StartedAt.Format(time.RFC3339)},
		{"listen", n.Listen}, {"admin", n.Admin}, {"gossip", dash(n.Gossip)},
		{"ready", strconv.FormatBool(n.Ready)}, {"draining", strconv.FormatBool(n.Draining)},
		{"connections", strconv.FormatInt(n.Connections, 10)}, {"sessions", strconv.FormatInt(n.Sessions, 10)},
		{"shards", strconv.Itoa(n.Shards)},
	})
	return nil
}

func (c *ctl) members(_ []string) error {
	var ms []server.MemberInfo
	if err := c.call(http.MethodGet, "/api/v1/cluster/members", nil, &ms); err != nil {
		return err
	}
	rows := [][]string{{"NAME", "ROLE", "STATE", "ALIVE", "GOSSIP", "SHARD", "LINK", "VERSION", "LABELS"}}
	for _, m := range ms {
		rows = append(rows, []string{m.Name, m.Role, m.State, strconv.FormatBool(m.Alive), m.Addr, dash(m.Shard),
			dash(m.Link), dash(m.Version), labels(m.Labels)})
	}
	c.table(rows)
	return nil
}

func (c *ctl) ring(_ []string) error {
	var r server.RingInfo
	if err := c.call(http.MethodGet, "/api/v1/cluster/ring", nil, &r); err != nil {
		return err
	}
	if c.output == "table" {
		fmt.Fprintf(c.stdout, "fingerprint %s, %d shard(s) in the ring\n\n", r.Fingerprint, len(r.Shards))
	}
	rows := [][]string{{"SHARD", "STATE", "IN RING", "PARTITIONS", "LINK", "VERSION", "LABELS"}}
	for _, s := range r.Members {
		rows = append(rows, []string{s.Name, s.State, strconv.FormatBool(s.InRing), strconv.Itoa(s.Partitions),
			s.Addr, dash(s.Version), labels(s.Labels)})
	}
	c.table(rows)
	return nil
}

func (c *ctl) sessions(limit int, after string) error {
	if limit < 1 || limit > 1000 {
		return usageError{fmt.Sprintf("--limit %d: want 1..1000", limit)}
	}
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if after != "" {
		q.Set("after", after)
	}
	var p server.SessionPage
	if err := c.call(http.MethodGet, "/api/v1/sessions?"+q.Encode(), nil, &p); err != nil {
		return err
	}
	rows := [][]string{{"DEVICE", "SESSION", "ATTACHED", "REMOTE", "UP LAST", "DOWN SEQ", "OUTBOX BYTES"}}
	for _, s := range p.Sessions {
		rows = append(rows, sessionRow(s))
	}
	c.table(rows)
	if p.Next != "" && c.output == "table" {
		fmt.Fprintf(c.stdout, "\nmore: switchyard ctl sessions --limit %d --after %s\n", limit, p.Next)
	}
	return nil
}

func sessionRow(s server.SessionInfo) []string {
	return []string{s.Device, s.Session, strconv.FormatBool(s.Attached), dash(s.Remote),
		strconv.FormatUint(uint64(s.UpLast), 10), strconv.FormatUint(uint64(s.DownSeq), 10), strconv.Itoa(s.OutboxBytes)}
}

// session asks the gateway where the device is in the whole cluster (it
// asks the other gateways) and prints one line per field.
func (c *ctl) session(args []string) error {
	var l server.DeviceLocation
	if err := c.call(http.MethodGet, "/api/v1/devices/"+url.PathEscape(args[0]), nil, &l); err != nil {
		return err
	}
	rows := [][]string{{"device", l.Device}}
	if l.Gateway == "" {
		rows = append(rows, []string{"gateway", "- (no gateway holds a session for it)"})
	} else {
		since := "-"
		if !l.Since.IsZero() {
			since = l.Since.Format(time.RFC3339) + " (" + time.Since(l.Since).Round(time.Second).String() + " ago)"
		}
		rows = append(rows, []string{"gateway", l.Gateway}, []string{"attached", strconv.FormatBool(l.Attached)},
			[]string{"remote", dash(l.Remote)}, []string{"session", dash(l.Session)},
			[]string{"shard", dash(l.Shard)}, []string{"rule", dash(l.Rule)},
			[]string{"epoch", strconv.FormatUint(l.Epoch, 10)}, []string{"since", since})
	}
	last := "-"
	if d := l.LastDisconnect; d != nil {
		last = fmt.Sprintf("%s at %s on %s (from %s, connected %.1fs)", d.Reason, d.At.Format(time.RFC3339), d.Gateway, dash(d.Remote), d.Seconds)
	}
	rows = append(rows, []string{"last disconnect", last})
	for _, g := range l.Gateways {
		if g.Error != "" {
			rows = append(rows, []string{"unanswered", g.Gateway + ": " + g.Error})
		}
	}
	c.table(rows)
	return nil
}

func (c *ctl) trace(device string, d time.Duration) error {
	var r server.TraceResult
	if err := c.call(http.MethodPost, "/api/v1/trace", server.TraceRequest{Device: device, For: d.String()}, &r); err != nil {
		return err
	}
	c.say("trace %s: device %s traced until %s on %d members (%s)", r.ID, r.Device, r.Until.Format(time.RFC3339),
		len(r.Members), strings.Join(r.Members, ", "))
	for m, e := range r.Failed {
		c.say("not reached: %s: %s", m, e)
	}
	if len(r.Failed) > 0 {
		return fmt.Errorf("the trace did not reach %d members", len(r.Failed))
	}
	return nil
}

func (c *ctl) disconnects(device string, limit int) error {
	var ds []server.Disconnect
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if device != "" {
		q.Set("device", device)
	}
	if err := c.call(http.MethodGet, "/api/v1/disconnects?"+q.Encode(), nil, &ds); err != nil {
		return err
	}
	rows := [][]string{{"AT", "DEVICE", "REASON", "REMOTE", "SECONDS", "GATEWAY"}}
	for _, d := range ds {
		rows = append(rows, []string{d.At.Format(time.RFC3339Nano), d.Device, d.Reason, dash(d.Remote),
			strconv.FormatFloat(d.Seconds, 'f', 1, 64), d.Gateway})
	}
	c.table(rows)
	return nil
}

func (c *ctl) kick(device string, code int, reason string) error {
	var r server.KickResult
	if err := c.call(http.MethodPost, "/api/v1/sessions/"+url.PathEscape(device)+"/kick",
		server.KickRequest{Code: code, Reason: reason}, &r); err != nil {
		return err
	}
	c.say("kicked %s: ERROR %d sent, connection closed", r.Device, r.Code)
	return nil
}

func (c *ctl) drain(_ []string) error {
	var r server.DrainResult
	if err := c.call(http.MethodPost, "/api/v1/drain", nil, &r); err != nil {
		return err
	}
	c.say("gateway %s draining: its devices get GOAWAY, then it exits", r.Member)
	return nil
}

func (c *ctl) drainShard(args []string) error {
	var r server.DrainResult
	if err := c.call(http.MethodPost, "/api/v1/shards/"+url.PathEscape(args[0])+"/drain", nil, &r); err != nil {
		return err
	}
	c.say("shard %s (member %s) asked to drain: its sessions move to other shards, then it exits", r.Draining, r.Member)
	return nil
}

// reloadResult is the answer of POST /api/v1/reload: the keys that took
// effect, and those that changed in the file but need a restart.
type reloadResult struct {
	Changed         []string `json:"changed"`
	RestartRequired []string `json:"restart_required"`
}

func (c *ctl) reload(_ []string) error {
	var r reloadResult
	if err := c.call(http.MethodPost, "/api/v1/reload", nil, &r); err != nil {
		return err
	}
	if len(r.Changed) == 0 && len(r.RestartRequired) == 0 {
		c.say("reloaded: nothing changed")
		return nil
	}
	c.say("reloaded: %d change(s) in effect", len(r.Changed))
	rows := [][]string{{"KEY", "STATUS"}}
	for _, k := range r.Changed {
		rows = append(rows, []string{k, "in effect"})
	}
	for _, k := range r.RestartRequired {
		rows = append(rows, []string{k, "needs a restart"})
	}
	c.table(rows)
	return nil
}

// say prints one line in table mode (-o json prints the API's answer).
func (c *ctl) say(format string, args ...any) {
	if c.output == "table" {
		fmt.Fprintf(c.stdout, format+"\n", args...)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func labels(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	kv := make([]string, 0, len(m))
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}
