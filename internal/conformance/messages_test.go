package conformance

import (
	"errors"
	"fmt"
)

// welcome holds the WELCOME fields of PROTOCOL.md, Handshake step 3.
type welcome struct {
	session  string
	resume   []byte
	hb       int64
	maxFrame int64
	node     string
	resumed  bool
	last     int64
}

// goaway holds the GOAWAY fields.
type goaway struct {
	reason   string
	retryMS  int64
	redirect []string
}

// errorMsg holds the ERROR fields.
type errorMsg struct {
	code    int64
	message string
}

// checkControl enforces "gateway frames other than DATA and ACK carry flags 0
// and seq 0".
func checkControl(f frame) error {
	if f.flags != 0 || f.seq != 0 {
		return fmt.Errorf("%s carries flags=%#02x seq=%d, want flags 0 and seq 0", typeName(f.typ), f.flags, f.seq)
	}
	return nil
}

// parseWelcome checks a frame is a WELCOME with every field of the right type.
func parseWelcome(f frame) (welcome, error) {
	if f.typ != typeWelcome {
		return welcome{}, fmt.Errorf("got %v, want WELCOME", f)
	}
	if err := checkControl(f); err != nil {
		return welcome{}, err
	}
	m, err := decodeMap(f.payload)
	if err != nil {
		return welcome{}, fmt.Errorf("WELCOME payload: %w", err)
	}
	var w welcome
	errs := []error{}
	add := func(err error) { errs = append(errs, err) }
	w.session, err = mapStr(m, "session")
	add(err)
	w.resume, err = mapBin(m, "resume")
	add(err)
	w.hb, err = mapInt(m, "hb")
	add(err)
	w.maxFrame, err = mapInt(m, "max_frame")
	add(err)
	w.node, err = mapStr(m, "node")
	add(err)
	w.resumed, err = mapBool(m, "resumed")
	add(err)
	w.last, err = mapInt(m, "last")
	add(err)
	if err := errors.Join(errs...); err != nil {
		return w, fmt.Errorf("WELCOME: %w", err)
	}
	if w.session == "" {
		return w, errors.New("WELCOME session is empty")
	}
	if len(w.resume) == 0 {
		return w, errors.New("WELCOME resume token is empty")
	}
	if w.last < 0 {
		return w, fmt.Errorf("WELCOME last = %d, negative", w.last)
	}
	return w, nil
}

// parseError checks a frame is an ERROR with an int code and a str message.
func parseError(f frame) (errorMsg, error) {
	if f.typ != typeError {
		return errorMsg{}, fmt.Errorf("got %v, want ERROR", f)
	}
	if err := checkControl(f); err != nil {
		return errorMsg{}, err
	}
	m, err := decodeMap(f.payload)
	if err != nil {
		return errorMsg{}, fmt.Errorf("ERROR payload: %w", err)
	}
	var e errorMsg
	code, err1 := mapInt(m, "code")
	msg, err2 := mapStr(m, "message")
	if err := errors.Join(err1, err2); err != nil {
		return e, fmt.Errorf("ERROR: %w", err)
	}
	return errorMsg{code: code, message: msg}, nil
}

// parseGoaway checks a frame is a GOAWAY with reason, retry_ms and redirect.
func parseGoaway(f frame) (goaway, error) {
	if f.typ != typeGoaway {
		return goaway{}, fmt.Errorf("got %v, want GOAWAY", f)
	}
	if err := checkControl(f); err != nil {
		return goaway{}, err
	}
	m, err := decodeMap(f.payload)
	if err != nil {
		return goaway{}, fmt.Errorf("GOAWAY payload: %w", err)
	}
	var g goaway
	var err1, err2 error
	g.reason, err1 = mapStr(m, "reason")
	g.retryMS, err2 = mapInt(m, "retry_ms")
	if err := errors.Join(err1, err2); err != nil {
		return g, fmt.Errorf("GOAWAY: %w", err)
	}
	if g.retryMS < 0 {
		return g, fmt.Errorf("GOAWAY retry_ms = %d, negative", g.retryMS)
	}
	list, ok := m["redirect"].([]any)
	if !ok {
		return g, fmt.Errorf("GOAWAY: %w", fieldErr(m, "redirect", "array of str"))
	}
	for i, v := range list {
		s, ok := v.(string)
		if !ok {
			return g, fmt.Errorf("GOAWAY redirect[%d] is %T %v, want str", i, v, v)
		}
		g.redirect = append(g.redirect, s)
	}
	return g, nil
}
