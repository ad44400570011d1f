package remote

import (
	"testing"

	"github.com/switchyard-gw/switchyard/protocol"
)

// stateExt encodes a State ext as a shard sends it.
func stateExt(tb testing.TB, x *moveState) []byte {
	tb.Helper()
	p, err := protocol.Marshal(x)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestDecodeMoveState(t *testing.T) {
	good := &moveState{LinkExt: protocol.LinkExt{State: []byte{1, 2}, LastUp: 7, DownSeq: 9, Tags: map[string]string{"ver": "1"}},
		Outbox: []protocol.OutFrame{{Seq: 8, Payload: []byte("a")}, {Seq: 9, Payload: []byte("b")}}, Topics: []string{"t"}}
	x, err := decodeMoveState(stateExt(t, good))
	if err != nil || x.LastUp != 7 || x.DownSeq != 9 || len(x.Outbox) != 2 || x.Outbox[1].Seq != 9 || x.Tags["ver"] != "1" {
		t.Fatalf("good state: %+v %v", x, err)
	}
	open, err := migratedOpen(&x, "dev", "gw")
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeMoveState(open)
	if err != nil || back.Device != "dev" || back.Reason != "migrated" || back.Node != "gw" || len(back.Outbox) != 2 || back.Topics[0] != "t" {
		t.Fatalf("migrated open: %+v %v", back, err)
	}
	for name, bad := range map[string]*moveState{
		"snapshot error":   {LinkExt: protocol.LinkExt{Code: 500, Reason: "snapshot: boom"}},
		"outbox unordered": {LinkExt: protocol.LinkExt{DownSeq: 9}, Outbox: []protocol.OutFrame{{Seq: 9}, {Seq: 8}}},
		"outbox seq 0":     {LinkExt: protocol.LinkExt{DownSeq: 9}, Outbox: []protocol.OutFrame{{Seq: 0}}},
		"beyond down_seq":  {LinkExt: protocol.LinkExt{DownSeq: 3}, Outbox: []protocol.OutFrame{{Seq: 4}}},
	} {
		if _, err := decodeMoveState(stateExt(t, bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := decodeMoveState([]byte{0x93, 1}); err == nil {
		t.Error("garbage accepted")
	}
}

// FuzzDecodeMoveState: a State ext from a shard never crashes the gateway,
// and what it accepts re-encodes as a migrated Open that decodes the same.
func FuzzDecodeMoveState(f *testing.F) {
	f.Add(stateExt(f, &moveState{LinkExt: protocol.LinkExt{State: []byte{0, 0, 0, 1}, LastUp: 3, DownSeq: 5},
		Outbox: []protocol.OutFrame{{Seq: 4, Payload: []byte("x")}, {Seq: 5}}, Topics: []string{"room"}}))
	f.Add(stateExt(f, &moveState{LinkExt: protocol.LinkExt{Code: 413, Reason: "state too large"}}))
	f.Add([]byte{0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		x, err := decodeMoveState(p)
		if err != nil {
			return
		}
		open, err := migratedOpen(&x, "d", "g")
		if err != nil {
			t.Fatalf("accepted state does not re-encode: %v", err)
		}
		y, err := decodeMoveState(open)
		if err != nil || y.LastUp != x.LastUp || y.DownSeq != x.DownSeq || len(y.Outbox) != len(x.Outbox) {
			t.Fatalf("re-encoded state differs: %+v vs %+v (%v)", y, x, err)
		}
	})
}
