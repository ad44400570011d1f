package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// memberlistLogger is what memberlist takes as its logger.
type memberlistLogger = *log.Logger

// newMemberlistLogger routes memberlist's log lines ("[WARN] memberlist:
// ...") to l at debug level, with memberlist's own level as an attribute:
// memberlist reports every failed probe of a dead peer as an error, which
// is routine for a gossip layer and would drown real errors.
func newMemberlistLogger(l *slog.Logger) memberlistLogger {
	return log.New(slogWriter{l.With("source", "memberlist")}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	if !w.l.Enabled(context.Background(), slog.LevelDebug) {
		return len(p), nil
	}
	line := bytes.TrimRight(p, "\n")
	level := ""
	if len(line) > 0 && line[0] == '[' {
		if i := bytes.IndexByte(line, ']'); i > 0 {
			level = string(line[1:i])
			line = bytes.TrimLeft(line[i+1:], " ")
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	w.l.Debug(string(line), "ml_level", level)
	return len(p), nil
}
