#!/usr/bin/env bash
# haproxy-target.sh: a `gwbench compare` target made of HAProxy in TCP mode
# in front of the naive baseline server (tools/baseline): what a user would
# deploy without Switchyard. The measured PID is HAProxy.
#
#   haproxy-target.sh BASELINE_BIN BACKEND_PORT LISTEN_ADDR
#
# It starts `BASELINE_BIN --listen 127.0.0.1:BACKEND_PORT` in the background,
# writes a TCP-mode configuration, then `exec`s `haproxy -db`: the process
# gwbench started becomes HAProxy (its CPU and RSS are the target's server_*
# figures) and the baseline is its child (children_*). The baseline runs
# under `setpriv --pdeathsig KILL`, so it dies with HAProxy.
#
# Each proxied session costs HAProxy two sockets, and this box allows 20,000
# open files per process: maxconn is 9,500 (HAPROXY_MAXCONN), so the mem
# scenario against this target holds at most 9,000 sessions.
#
# Environment: HAPROXY (default: haproxy on PATH), HAPROXY_MAXCONN,
# HAPROXY_THREADS (default: HAProxy's own, one per CPU).
set -euo pipefail
if [ $# -ne 3 ]; then
	sed -n '2,7p' "$0" >&2
	exit 2
fi
baseline=$1 backend=127.0.0.1:$2 listen=$3
haproxy=${HAPROXY:-haproxy}
if ! command -v "$haproxy" > /dev/null; then
	echo "haproxy-target.sh: $haproxy not found (make bench installs Debian's haproxy)" >&2
	exit 1
fi
maxconn=${HAPROXY_MAXCONN:-9500}
cfg=$(mktemp "${TMPDIR:-/tmp}/gwbench-haproxy.XXXXXX.cfg")
threads=""
if [ -n "${HAPROXY_THREADS:-}" ]; then
	threads="nbthread $HAPROXY_THREADS"
fi
# Idle sessions must outlive the mem scenario and the protocol's heartbeat
# (30 s default; three missed beats close a session), so the proxy's own
# idle timeouts are well above both.
cat > "$cfg" <<CFG
global
	maxconn $maxconn
	$threads

defaults
	mode tcp
	maxconn $maxconn
	timeout connect 5s
	timeout client 10m
	timeout server 10m

frontend devices
	bind $listen
	default_backend naive

backend naive
	server baseline $backend
CFG

# Not a subshell: the baseline must be a child of this process, which
# becomes HAProxy, for --pdeathsig to tie them together.
setpriv --pdeathsig KILL -- "$baseline" --listen "$backend" &
# haproxy reads the file at start; nothing needs it afterwards.
( sleep 5; rm -f "$cfg" ) &
exec "$haproxy" -db -f "$cfg"
