package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Defaults of the baseline, the same as the gateway's (PROTOCOL.md, "Defaults").
const (
	defaultHeartbeat        = 30 * time.Second
	defaultHandshakeTimeout = 5 * time.Second
	idleFactor              = 3 // idle close after idleFactor × heartbeat
	nodeName                = "baseline"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7401", "address to accept devices on")
	secretFile := flag.String("auth-secret-file", "", "file of HMAC secrets, one per line; empty disables auth")
	maxFrame := flag.Int("max-frame", protocol.DefaultMaxFrame, "largest DATA payload accepted")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "baseline")
	if err := run(*listen, *secretFile, *maxFrame, log); err != nil {
		log.Error("baseline", "err", err)
		os.Exit(1)
	}
}

func run(addr, secretFile string, maxFrame int, log *slog.Logger) error {
	srv := &server{maxFrame: maxFrame, hb: defaultHeartbeat}
	if secretFile != "" {
		secrets, err := readSecrets(secretFile)
		if err != nil {
			return err
		}
		srv.secrets = secrets
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("baseline: listen %s: %w", addr, err)
	}
	log.Info("listening", "addr", ln.Addr().String(), "auth", srv.secrets != nil)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() { <-sig; ln.Close() }()
	var wg sync.WaitGroup
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil // connections die with the process
			}
			log.Warn("accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.serve(c)
		}()
	}
}

// readSecrets reads one secret per non-empty line, without the line ending.
func readSecrets(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("baseline: read secrets: %w", err)
	}
	var out [][]byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) > 0 {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("baseline: %s holds no secret", path)
	}
	return out, nil
}
