package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/switchyard-gw/switchyard/client"
	"github.com/switchyard-gw/switchyard/protocol"
)

// clientQuiet is how long `switchyard client` waits, at the end of its
// input, without receiving anything before it concludes no echo is coming.
const clientQuiet = 300 * time.Millisecond

// runClient runs `switchyard client`: every line read from stdin goes out
// as one DATA frame, every DATA received is printed to stdout as one line.
// At the end of stdin it waits (at most --wait) for outstanding ACKs and
// echoes, then closes. It returns nil when ctx ends (SIGINT), and the
// gateway's refusal (e.g. 401, 409) when the session ends for good.
//
// A stdin read still blocked when runClient returns is left behind: the
// process is about to exit.
func runClient(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	cfg, reliable, wait, err := parseClientFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	var recvErr error
	recvDone := make(chan struct{}) // closed when printMessages returned recvErr
	go func() {
		defer close(recvDone)
		recvErr = printMessages(c, stdout)
	}()
	err = sendLines(ctx, c, stdin, reliable, recvDone)
	if errors.Is(err, io.EOF) {
		waitForEchoes(c, wait)
		err = nil
	}
	c.Close()
	<-recvDone
	if err == nil && !errors.Is(recvErr, client.ErrClosed) {
		err = recvErr
	}
	return err
}

// parseClientFlags turns the command line into a client Config.
func parseClientFlags(args []string) (cfg client.Config, reliable bool, wait time.Duration, err error) {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	var secretFile string
	var verbose bool
	tags := map[string]string{}
	fs.StringVar(&cfg.Addr, "addr", client.DefaultAddr, "gateway device `address` host:port")
	fs.StringVar(&cfg.ID, "id", "", "device `id` (default: cli-<random>)")
	fs.StringVar(&secretFile, "secret-file", "", "`file` of auth secrets; the first non-empty line signs the token")
	fs.BoolVar(&reliable, "reliable", true, "send each line as reliable DATA (false: best effort)")
	fs.Func("tag", "device tag `k=v` sent in HELLO (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want k=v, got %q", s)
		}
		tags[k] = v
		return nil
	})
	fs.DurationVar(&wait, "wait", 2*time.Second, "at the end of input, how long to wait for ACKs and echoes")
	fs.BoolVar(&verbose, "v", false, "log connection events to stderr")
	if err = fs.Parse(args); err != nil {
		return cfg, false, 0, err
	}
	if fs.NArg() > 0 {
		return cfg, false, 0, fmt.Errorf("client: unexpected argument %q", fs.Arg(0))
	}
	if cfg.ID == "" {
		cfg.ID = fmt.Sprintf("cli-%08x", rand.Uint32())
	}
	if len(tags) > 0 {
		cfg.Tags = tags
	}
	if secretFile != "" {
		secrets, err := readSecrets(secretFile) // the first one signs
		if err != nil {
			return cfg, reliable, wait, err
		}
		cfg.Secret = secrets[0]
	}
	if verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return cfg, reliable, wait, cfg.Validate()
}

// sendLines sends every line of stdin until it ends (io.EOF), ctx ends
// (nil), the receiver stops or a send fails for good.
func sendLines(ctx context.Context, c *client.Client, stdin io.Reader, reliable bool, recvDone <-chan struct{}) error {
	lines := make(chan []byte)
	scanErr := make(chan error, 1)
	quit := make(chan struct{})
	defer close(quit)
	go func() { scanErr <- scanLines(stdin, lines, quit) }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-recvDone:
			return nil // runClient reports why
		case err := <-scanErr:
			return err
		case line := <-lines:
			err := c.Send(ctx, line, reliable)
			switch {
			case errors.Is(err, client.ErrNotConnected):
				fmt.Fprintln(os.Stderr, "switchyard client: not connected, line dropped")
			case ctx.Err() != nil:
				return nil
			case err != nil:
				return err
			}
		}
	}
}

// scanLines reads lines from r into lines until r ends (io.EOF) or quit
// is closed.
func scanLines(r io.Reader, lines chan<- []byte, quit <-chan struct{}) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), protocol.DefaultMaxFrame+2)
	for sc.Scan() {
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		select {
		case lines <- append([]byte(nil), line...):
		case <-quit:
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("client: stdin: %w", err)
	}
	return io.EOF
}

// printMessages prints every received DATA payload as one line until Recv
// fails, and returns that error.
func printMessages(c *client.Client, stdout io.Writer) error {
	for {
		m, err := c.Recv(context.Background())
		if err != nil {
			return err
		}
		if _, err := stdout.Write(append(m.Payload, '\n')); err != nil {
			return fmt.Errorf("client: stdout: %w", err)
		}
	}
}

// waitForEchoes waits, at most wait, until every reliable line is
// acknowledged and then until nothing has been received for clientQuiet or
// as many messages came back as were sent.
func waitForEchoes(c *client.Client, wait time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = c.Flush(ctx)
	last, quietSince := c.Stats().Received, time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		st := c.Stats()
		if st.Received >= st.Sent {
			return
		}
		if st.Received != last {
			last, quietSince = st.Received, time.Now()
		} else if time.Since(quietSince) >= clientQuiet {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
