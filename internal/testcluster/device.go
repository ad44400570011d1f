package testcluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-gw/switchyard/client"
)

// Device dial defaults: a test device reconnects fast, so that it follows
// a cluster change within a test's deadline.
const (
	DeviceReconnectMin = 50 * time.Millisecond
	DeviceReconnectMax = 500 * time.Millisecond
)

// Dial connects a device with cfg (reconnect on, backoff between
// DeviceReconnectMin and DeviceReconnectMax unless set), retrying while
// the gateway answers 503 or cannot be reached, until ctx ends; then it
// fails the test. t.Cleanup closes the client.
func Dial(ctx context.Context, t testing.TB, cfg client.Config) *client.Client {
	t.Helper()
	if cfg.ReconnectMin == 0 {
		cfg.ReconnectMin = DeviceReconnectMin
	}
	if cfg.ReconnectMax == 0 {
		cfg.ReconnectMax = DeviceReconnectMax
	}
	c, err := DialRetry(ctx, cfg)
	if err != nil {
		t.Fatalf("testcluster: dial %s through %s: %v", cfg.ID, cfg.Addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// DialRetry is client.Dial retried every pollInterval·4 while the error is
// not final (503, connection refused, a timeout), until ctx ends.
func DialRetry(ctx context.Context, cfg client.Config) (*client.Client, error) {
	for {
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := client.Dial(dctx, cfg)
		cancel()
		if err == nil {
			return c, nil
		}
		var ce *client.Error
		if errors.As(err, &ce) && ce.Final() {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(4 * pollInterval):
		}
	}
}

// Exchange sends payload as reliable DATA and returns the payload of the
// next message received.
func Exchange(ctx context.Context, c *client.Client, payload string) (string, error) {
	if err := c.Send(ctx, []byte(payload), true); err != nil {
		return "", err
	}
	m, err := c.Recv(ctx)
	if err != nil {
		return "", err
	}
	return string(m.Payload), nil
}

// CounterReply parses the counter app's reply "<shard> <count>".
func CounterReply(reply string) (shard string, count uint64, err error) {
	shard, n, ok := strings.Cut(reply, " ")
	if ok {
		count, err = strconv.ParseUint(n, 10, 64)
	}
	if !ok || err != nil || shard == "" {
		return "", 0, fmt.Errorf("testcluster: %q is not a counter reply", reply)
	}
	return shard, count, nil
}
