package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// Defaults. Every Config field left at its zero value takes one of these.
const (
	DefaultAddr             = "127.0.0.1:7400"       // the gateway's default device listener
	DefaultTokenTTL         = time.Hour              // lifetime of a token made from Secret
	DefaultDialTimeout      = 5 * time.Second        // TCP connect
	DefaultHandshakeTimeout = 5 * time.Second        // HELLO written to WELCOME read
	DefaultWriteTimeout     = 10 * time.Second       // one write to the socket
	DefaultReconnectMin     = 100 * time.Millisecond // backoff ceiling of the first retry
	DefaultReconnectMax     = 10 * time.Second       // backoff ceiling, however many retries
	DefaultMaxPending       = 1024                   // unacknowledged reliable upstream frames
	DefaultRecvBuffer       = 1024                   // received messages waiting for Recv
	DefaultMaxRecvPayload   = 1 << 20                // largest downstream payload accepted
	DefaultHeartbeat        = 30 * time.Second       // hb when WELCOME carries none
	DefaultResendTimeout    = 10 * time.Second       // oldest unacknowledged reliable frame waits this long, then go back
)

// RateLimitBackoff is how long the client waits after an ERROR 429 before it
// resends the reliable frames the gateway has not acknowledged.
const RateLimitBackoff = time.Second

// Config configures a Client. The zero value of every field except Addr and
// ID means the default named in its comment.
type Config struct {
	// Addr is the gateway's device address, host:port. Default DefaultAddr.
	Addr string
	// Fallbacks are more gateways' device addresses (host:port). After a
	// connection is lost the client tries, in turn, the gateway it was on,
	// Addr, then these, so that a device whose gateway died (no GOAWAY to
	// name another) resumes on another one. Dial uses Addr only. Give
	// each device its own order (shuffled, say): devices that all try the
	// same next gateway move a dead gateway's whole load onto it.
	// Default: none.
	Fallbacks []string
	// ID is the device id: 1–128 bytes of printable ASCII, no spaces.
	// Required.
	ID string
	// Token is a ready-made auth token "<exp>.<sig>", sent as is on every
	// handshake (a reconnect after it expired fails with 401). Leave empty
	// when the gateway does not enforce auth, or set Secret instead.
	Token string
	// Secret, when set, makes the client create a fresh token with
	// protocol.MakeToken for every handshake. Exclusive with Token.
	Secret []byte
	// TokenTTL is the lifetime of tokens made from Secret.
	// Default DefaultTokenTTL.
	TokenTTL time.Duration
	// Tags are the device attributes sent in HELLO (at most 16).
	Tags map[string]string
	// TLS, when set, makes the client speak TLS to the gateway (its
	// native TLS, or a TLS-terminating proxy in front of it): the TLS
	// handshake runs within HandshakeTimeout, before HELLO. An empty
	// ServerName is taken from the host of the address dialled. Present a
	// client certificate (Certificates) when the gateway asks for one:
	// its name must then be the device id. Not modified by the client.
	// Default: plain TCP.
	TLS *tls.Config
	// DialTimeout bounds the TCP connect. Default DefaultDialTimeout.
	DialTimeout time.Duration
	// HandshakeTimeout bounds the wait from HELLO to WELCOME.
	// Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one socket write; a write that takes longer
	// breaks the connection. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the reconnect backoff: attempt n
	// waits a uniformly random time in [0, min(ReconnectMax,
	// ReconnectMin·2ⁿ)] (full jitter). Defaults DefaultReconnectMin and
	// DefaultReconnectMax.
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// DisableReconnect turns off reconnect and resume: after a connection
	// loss or GOAWAY the client stops and Recv returns ErrDisconnected.
	// By default (false) the client reconnects and resumes.
	DisableReconnect bool
	// MaxPending bounds the reliable upstream frames sent but not yet
	// acknowledged; a reliable Send blocks while it is reached.
	// Default DefaultMaxPending.
	MaxPending int
	// RecvBuffer is how many received messages wait for Recv before the
	// client stops reading the socket. Default DefaultRecvBuffer.
	RecvBuffer int
	// MaxRecvPayload is the largest downstream DATA payload accepted; a
	// larger frame breaks the connection. Default DefaultMaxRecvPayload.
	MaxRecvPayload int
	// Heartbeat, when set and shorter than WELCOME hb, replaces it: PING
	// after this much silence, connection dead after 3× without traffic.
	// Default: hb from WELCOME.
	Heartbeat time.Duration
	// ResendTimeout is how long the oldest unacknowledged reliable frame
	// waits for its ACK before the client goes back and resends from it on
	// the same connection. The gateway drops a frame over the device's
	// rate with at most one 429 a second; one dropped without its 429
	// (a starved gateway's coarse clock) would otherwise wait forever,
	// and every frame after it as a gap. Default DefaultResendTimeout.
	ResendTimeout time.Duration
	// Logger receives connection events (never per frame). Default: discard.
	Logger *slog.Logger
}

// Validate checks the fields and their combination. Zero values are valid
// (they mean the defaults), except ID.
func (c *Config) Validate() error {
	var errs []error
	if !protocol.ValidDeviceID(c.ID) {
		errs = append(errs, fmt.Errorf("ID %q: want 1-%d bytes of printable ASCII without spaces", c.ID, protocol.MaxDeviceIDLen))
	}
	if c.Token != "" && len(c.Secret) > 0 {
		errs = append(errs, errors.New("Token and Secret are exclusive"))
	}
	if len(c.Tags) > protocol.MaxTags {
		errs = append(errs, fmt.Errorf("Tags: %d entries, at most %d", len(c.Tags), protocol.MaxTags))
	}
	for name, d := range map[string]time.Duration{
		"TokenTTL": c.TokenTTL, "DialTimeout": c.DialTimeout, "HandshakeTimeout": c.HandshakeTimeout,
		"WriteTimeout": c.WriteTimeout, "ReconnectMin": c.ReconnectMin, "ReconnectMax": c.ReconnectMax,
		"Heartbeat": c.Heartbeat, "ResendTimeout": c.ResendTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s: negative duration %v", name, d))
		}
	}
	if c.ReconnectMin > 0 && c.ReconnectMax > 0 && c.ReconnectMin > c.ReconnectMax {
		errs = append(errs, fmt.Errorf("ReconnectMin %v above ReconnectMax %v", c.ReconnectMin, c.ReconnectMax))
	}
	if c.MaxPending < 0 || c.RecvBuffer < 0 || c.MaxRecvPayload < 0 {
		errs = append(errs, errors.New("MaxPending, RecvBuffer and MaxRecvPayload must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("client: config: %w", err)
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	setStr(&c.Addr, DefaultAddr)
	setDur(&c.TokenTTL, DefaultTokenTTL)
	setDur(&c.DialTimeout, DefaultDialTimeout)
	setDur(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	setDur(&c.WriteTimeout, DefaultWriteTimeout)
	setDur(&c.ReconnectMin, DefaultReconnectMin)
	setDur(&c.ReconnectMax, max(DefaultReconnectMax, c.ReconnectMin))
	setDur(&c.ResendTimeout, DefaultResendTimeout)
	setInt(&c.MaxPending, DefaultMaxPending)
	setInt(&c.RecvBuffer, DefaultRecvBuffer)
	setInt(&c.MaxRecvPayload, DefaultMaxRecvPayload)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Secret = append([]byte(nil), c.Secret...)
	c.Fallbacks = append([]string(nil), c.Fallbacks...)
	if c.Tags != nil {
		tags := make(map[string]string, len(c.Tags))
		for k, v := range c.Tags {
			tags[k] = v
		}
		c.Tags = tags
	}
	return c
}

func setStr(p *string, d string) {
	if *p == "" {
		*p = d
	}
}

func setDur(p *time.Duration, d time.Duration) {
	if *p == 0 {
		*p = d
	}
}

func setInt(p *int, d int) {
	if *p == 0 {
		*p = d
	}
}
