package server

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/switchyard-gw/switchyard/protocol"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// netpoll's pollers and its goroutine pool live for the process.
		goleak.IgnoreTopFunction("github.com/cloudwego/netpoll.(*defaultPoll).Wait"),
		goleak.IgnoreTopFunction("syscall.Syscall6"),
		goleak.IgnoreTopFunction("github.com/bytedance/gopkg/util/gopool.(*worker).run.func1"),
		goleak.IgnoreAnyFunction("github.com/cloudwego/netpoll.(*defaultPoll).Wait"),
	)
}

func TestEchoBestEffortAndReliable(t *testing.T) {
	g := startGateway(t, Config{Node: "gw-test"})
	d := dial(t, g)
	w := d.hello(protocol.Hello{ID: "dev-1"})
	if w.Session == "" || w.HB != 30 || w.MaxFrame != 65536 || w.Node != "gw-test" || w.Resumed || w.Last != 0 || len(w.Resume) == 0 {
		t.Fatalf("welcome %+v", w)
	}
	d.send(protocol.TypeData, 0, 0, []byte("hi"))
	if f := d.read(); f.Type != protocol.TypeData || f.Flags != 0 || f.Seq != 0 || string(f.Payload) != "hi" {
		t.Fatalf("echo %+v", f)
	}
	d.send(protocol.TypeData, protocol.FlagAckRequested, 1, []byte("r1"))
	var gotEcho, gotAck bool
	for !gotEcho || !gotAck {
		f := d.read()
		switch {
		case f.Type == protocol.TypeData && f.Seq == 1 && f.Flags == protocol.FlagAckRequested && bytes.Equal(f.Payload, []byte("r1")):
			gotEcho = true
		case f.Type == protocol.TypeAck && f.Seq == 1:
			gotAck = true
		default:
			t.Fatalf("unexpected %+v", f)
		}
	}
}

// TestNetpollTuned fails when a netpoll upgrade moved the internals that
// tuneNetpoll trims (see netpoll_tune.go).
func TestNetpollTuned(t *testing.T) {
	tuneNetpoll()
	if !barrierOK {
		t.Fatal("netpoll's write barrier pool was not tuned: its layout changed")
	}
	b := reflect.ValueOf(netpollBarrierPool.New()).Elem()
	if n := b.FieldByName("bs").Len(); n != barrierSlots {
		t.Fatalf("barrier has %d slots, want %d", n, barrierSlots)
	}
}
