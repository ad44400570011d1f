package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/switchyard-gw/switchyard/protocol"
)

// check is one conformance probe run before measuring a target: a target
// that fails one would make its figures meaningless.
type check struct {
	name     string
	run      func(d *checker) error
	optional bool // needs a session table (the baseline has none)
}

// checker dials the target for the probes.
type checker struct {
	addr string
	o    common
	n    int // device id counter
}

var checks = []check{
	{"welcome map", (*checker).welcome, false},
	{"best-effort echo", (*checker).bestEffort, false},
	{"reliable echo: ACK and reliable DATA", (*checker).reliable, false},
	{"PING answered by PONG", (*checker).ping, false},
	{"first frame not HELLO: 400", (*checker).notHello, false},
	{"bad HELLO version: 400", (*checker).badVersion, false},
	{"reserved flag: 400", (*checker).reservedFlag, false},
	{"oversize length: 413 before the body", (*checker).oversize, false},
	{"second connection of a device: 409 on the first", (*checker).takeover, true},
}

// runCheck probes the target and prints one line per probe; it fails when
// any probe fails.
func runCheck(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	d := &checker{}
	fs.StringVar(&d.addr, "addr", "127.0.0.1:7400", "target device address")
	d.o.flags(fs)
	fs.Parse(args)
	if err := d.o.setup(); err != nil {
		return err
	}
	failed := 0
	for _, c := range checks {
		err := c.run(d)
		status := "ok"
		switch {
		case err != nil && c.optional:
			status = "FAIL (optional): " + err.Error()
		case err != nil:
			status, failed = "FAIL: "+err.Error(), failed+1
		}
		fmt.Printf("%-50s %s\n", c.name, status)
	}
	if failed > 0 {
		return fmt.Errorf("gwbench: %d of %d checks failed", failed, len(checks))
	}
	return nil
}

// open dials and, if hello, completes a handshake as a new device.
func (d *checker) open(hello bool) (net.Conn, string, error) {
	d.n++
	id := "gwb-check-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(d.n)
	c, err := net.DialTimeout("tcp", d.addr, 2*time.Second)
	if err != nil {
		return nil, id, err
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if hello {
		var buf []byte
		if err := handshake(c, &buf, id, d.o.auth.token(id)); err != nil {
			c.Close()
			return nil, id, err
		}
	}
	return c, id, nil
}

// expectError reads until an ERROR frame and checks its code.
func expectError(c net.Conn, code int) error {
	var buf []byte
	f, err := expect(c, &buf, protocol.TypeError)
	if err != nil {
		return fmt.Errorf("want ERROR %d, got %w", code, err)
	}
	if got := errorCode(f.Payload); got != code {
		return fmt.Errorf("ERROR %d, want %d", got, code)
	}
	return nil
}

func (d *checker) welcome() error {
	c, id, err := d.open(false)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := appendHello(nil, id, d.o.auth.token(id))
	if _, err := c.Write(buf); err != nil {
		return err
	}
	f, err := expect(c, &buf, protocol.TypeWelcome)
	if err != nil {
		return err
	}
	var w protocol.Welcome
	if err := protocol.Unmarshal(f.Payload, &w); err != nil {
		return err
	}
	if w.Session == "" || w.HB <= 0 || w.MaxFrame <= 0 || len(w.Resume) == 0 || w.Resumed {
		return fmt.Errorf("welcome %+v", w)
	}
	return nil
}

func (d *checker) bestEffort() error {
	c, _, err := d.open(true)
	if err != nil {
		return err
	}
	defer c.Close()
	var buf []byte
	return echo(c, &buf, []byte("0123456789abcdef"))
}

func (d *checker) reliable() error {
	c, _, err := d.open(true)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(protocol.AppendFrame(nil, protocol.TypeData, protocol.FlagAckRequested, 1, []byte("r1"))); err != nil {
		return err
	}
	var buf []byte
	gotAck, gotData := false, false
	for !gotAck || !gotData {
		f, err := readFrame(c, &buf)
		if err != nil {
			return fmt.Errorf("ack %v data %v: %w", gotAck, gotData, err)
		}
		switch {
		case f.Type == protocol.TypeAck && f.Seq == 1:
			gotAck = true
		case f.Type == protocol.TypeData && f.Reliable() && f.Seq == 1 && string(f.Payload) == "r1":
			gotData = true
			c.Write(protocol.AppendFrame(nil, protocol.TypeAck, 0, 1, nil))
		default:
			return fmt.Errorf("unexpected %s flags %d seq %d", f.Type, f.Flags, f.Seq)
		}
	}
	return nil
}

func (d *checker) ping() error {
	c, _, err := d.open(true)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(protocol.AppendFrame(nil, protocol.TypePing, 0, 0, []byte("x"))); err != nil {
		return err
	}
	var buf []byte
	f, err := expect(c, &buf, protocol.TypePong)
	if err == nil && string(f.Payload) != "x" {
		err = fmt.Errorf("PONG payload %q", f.Payload)
	}
	return err
}

func (d *checker) notHello() error {
	c, _, err := d.open(false)
	if err != nil {
		return err
	}
	defer c.Close()
	c.Write(protocol.AppendFrame(nil, protocol.TypePing, 0, 0, nil))
	return expectError(c, protocol.CodeBadRequest)
}

func (d *checker) badVersion() error {
	c, _, err := d.open(false)
	if err != nil {
		return err
	}
	defer c.Close()
	b := appendHello(nil, "gwb-check-v", "")
	b[protocol.HeaderSize+3] = 0x02 // {"v":2,…}
	c.Write(b)
	return expectError(c, protocol.CodeBadRequest)
}

func (d *checker) reservedFlag() error {
	c, _, err := d.open(true)
	if err != nil {
		return err
	}
	defer c.Close()
	c.Write(protocol.AppendFrame(nil, protocol.TypeData, 0x80, 0, nil))
	return expectError(c, protocol.CodeBadRequest)
}

func (d *checker) oversize() error {
	c, _, err := d.open(true)
	if err != nil {
		return err
	}
	defer c.Close()
	hdr := binary.BigEndian.AppendUint32(nil, 16<<20) // 16 MiB announced, none sent
	c.Write(append(hdr, byte(protocol.TypeData), 0, 0, 0, 0, 0))
	return expectError(c, protocol.CodeTooLarge)
}

func (d *checker) takeover() error {
	c1, id, err := d.open(true)
	if err != nil {
		return err
	}
	defer c1.Close()
	c2, err := net.DialTimeout("tcp", d.addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(3 * time.Second))
	var buf []byte
	if err := handshake(c2, &buf, id, d.o.auth.token(id)); err != nil {
		return fmt.Errorf("second HELLO: %w", err)
	}
	return expectError(c1, protocol.CodeConflict)
}
