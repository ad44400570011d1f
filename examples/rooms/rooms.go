package rooms

import (
	"bytes"

	"github.com/switchyard-gw/switchyard/backend"
)

// Handler runs the chat commands.
type Handler struct{}

var _ backend.Handler = Handler{}

// OnOpen accepts every session.
func (Handler) OnOpen(*backend.Session, backend.OpenReason, []byte) error { return nil }

// OnMessage runs one command.
func (Handler) OnMessage(s *backend.Session, payload []byte, reliable bool) error {
	cmd, rest, _ := bytes.Cut(payload, []byte(" "))
	switch string(cmd) {
	case "join", "leave":
		return join(s, string(cmd), string(rest))
	case "say":
		room, text, ok := bytes.Cut(rest, []byte(" "))
		if !ok || len(room) == 0 {
			return reply(s, "error: say <room> <text>")
		}
		msg := append([]byte(s.Device()+": "), text...)
		return s.Server().Publish(string(room), msg)
	}
	return reply(s, "error: unknown command")
}

func join(s *backend.Session, cmd, room string) error {
	if room == "" {
		return reply(s, "error: "+cmd+" <room>")
	}
	if cmd == "join" {
		if err := s.Subscribe(room); err != nil {
			return err
		}
		return s.Send([]byte("joined "+room), true)
	}
	if err := s.Unsubscribe(room); err != nil {
		return err
	}
	return s.Send([]byte("left "+room), true)
}

func reply(s *backend.Session, text string) error {
	s.Send([]byte(text), false)
	return nil
}

// OnClose does nothing: the gateways drop the subscriptions with the
// connection.
func (Handler) OnClose(*backend.Session, string) {}
