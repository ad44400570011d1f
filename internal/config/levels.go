package config

import (
	"fmt"
	"log/slog"
	"strings"
)

// ParseLevel parses a log level: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log_level %q: want debug, info, warn or error", s)
}

// checkLog adds the problems of a log level and format.
func checkLog(p *Problems, level, format string) slog.Level {
	l, err := ParseLevel(level)
	if err != nil {
		p.Addf("%v", err)
	}
	if format != "text" && format != "json" {
		p.Addf("log_format %q: want text or json", format)
	}
	return l
}
