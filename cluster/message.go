package cluster

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/hashicorp/memberlist"
)

// Message is a user message received from another member.
type Message struct {
	From    string // sender's member name, as the sender states it
	Payload []byte // owned by the receiver
}

// User message framing, inside memberlist's own: version, sender name
// length, sender name, payload.
const (
	msgVersion = 1
	msgHeader  = 2
)

// SendTo sends payload to the alive member called name over a TCP stream
// (memberlist SendReliable). A nil error means the whole message reached
// the member's process, not that anything consumed it: a receiver whose
// Messages consumer lags MessageBuffer messages behind drops it (counted
// in Stats). Callers that need more add their own acknowledgement. It
// blocks for at most Timing.StreamTimeout.
func (n *Node) SendTo(name string, payload []byte) error {
	if len(payload) > n.cfg.MaxMessage {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(payload), n.cfg.MaxMessage)
	}
	ml, err := n.running()
	if err != nil {
		return err
	}
	m, ok := n.view.get(name)
	if !ok || !m.Alive {
		return fmt.Errorf("%w: %q", ErrUnknownMember, name)
	}
	ap, err := netip.ParseAddrPort(m.Addr)
	if err != nil {
		return fmt.Errorf("cluster: send to %s: %w", name, err)
	}
	to := &memberlist.Node{Name: m.Name, Addr: net.IP(ap.Addr().AsSlice()), Port: ap.Port()}
	if err := ml.SendReliable(to, n.frame(payload)); err != nil {
		return fmt.Errorf("cluster: send to %s: %w", name, err)
	}
	return nil
}

func (n *Node) frame(payload []byte) []byte {
	from := n.cfg.Name
	b := make([]byte, 0, msgHeader+len(from)+len(payload))
	b = append(b, msgVersion, byte(len(from)))
	b = append(b, from...)
	return append(b, payload...)
}

// Messages returns the user messages received from other members. It is
// closed by Close. Messages beyond MessageBuffer waiting here are dropped
// (memberlist's receive path must never block) and counted in Stats.
func (n *Node) Messages() <-chan Message { return n.msgs }

// receive is memberlist's NotifyMsg: parse, copy (memberlist reuses buf),
// hand over without blocking.
func (n *Node) receive(buf []byte) {
	msg, ok := n.parse(buf)
	if !ok {
		n.msgDrop.Add(1)
		return
	}
	n.msgMu.RLock()
	defer n.msgMu.RUnlock()
	if n.msgClosed {
		return
	}
	select {
	case n.msgs <- msg:
		n.msgRecv.Add(1)
	default:
		n.msgDrop.Add(1)
	}
}

func (n *Node) parse(buf []byte) (Message, bool) {
	if len(buf) < msgHeader || buf[0] != msgVersion {
		return Message{}, false
	}
	end := msgHeader + int(buf[1])
	if len(buf) < end || len(buf)-end > n.cfg.MaxMessage {
		return Message{}, false
	}
	payload := make([]byte, len(buf)-end)
	copy(payload, buf[end:])
	return Message{From: string(buf[msgHeader:end]), Payload: payload}, true
}

// delegate adapts Node to memberlist.Delegate. Its methods run on
// memberlist's goroutines (the packet loop among them): they never block
// and never call memberlist.
type delegate struct{ n *Node }

var _ memberlist.Delegate = delegate{}

// NodeMeta returns the encoded local metadata. UpdateMeta guarantees it
// fits; the check only avoids memberlist's panic should that ever break.
func (d delegate) NodeMeta(limit int) []byte {
	enc := d.n.local.Load().enc
	if len(enc) > limit {
		return nil
	}
	return enc
}

func (d delegate) NotifyMsg(buf []byte)              { d.n.receive(buf) }
func (d delegate) GetBroadcasts(_, _ int) [][]byte   { return nil }
func (d delegate) LocalState(bool) []byte            { return nil }
func (d delegate) MergeRemoteState(_ []byte, _ bool) {}
