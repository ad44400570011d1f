#!/usr/bin/env bash
# haproxy-tls-target.sh: a `gwbench compare` target made of HAProxy
# terminating TLS in front of a plain Switchyard gateway: the front
# docs/tls.md recommends where native TLS costs too much memory. The
# measured PID is HAProxy; the gateway is its child (children_*).
#
#   haproxy-tls-target.sh GATEWAY_BIN PEM BACKEND_PORT ADMIN_ADDR LISTEN_ADDR [GATEWAY FLAGS...]
#
# PEM holds the certificate and its key (HAProxy's `crt`). The gateway
# runs `gateway --listen 127.0.0.1:BACKEND_PORT --admin ADMIN_ADDR FLAGS`
# under `setpriv --pdeathsig KILL`, so it dies with HAProxy. With
# SEND_PROXY=1 the server line carries `send-proxy-v2` (the gateway must
# then accept PROXY v2 from 127.0.0.1).
#
# Each proxied session costs HAProxy two sockets, and this box allows
# 20,000 open files per process: maxconn is 9,500 (HAPROXY_MAXCONN).
# Environment: HAPROXY, HAPROXY_MAXCONN, HAPROXY_THREADS, SEND_PROXY.
set -euo pipefail
if [ $# -lt 5 ]; then
	sed -n '2,9p' "$0" >&2
	exit 2
fi
gateway=$1 pem=$2 backend=127.0.0.1:$3 admin=$4 listen=$5
shift 5
haproxy=${HAPROXY:-haproxy}
maxconn=${HAPROXY_MAXCONN:-9500}
proxy=""
if [ "${SEND_PROXY:-0}" = 1 ]; then
	proxy="send-proxy-v2"
fi
threads=""
if [ -n "${HAPROXY_THREADS:-}" ]; then
	threads="nbthread $HAPROXY_THREADS"
fi
cfg=$(mktemp "${TMPDIR:-/tmp}/gwbench-haproxy-tls.XXXXXX.cfg")
# Idle sessions must outlive the mem scenario and the protocol's
# heartbeat, so the proxy's idle timeouts are well above both.
cat > "$cfg" <<CFG
global
	maxconn $maxconn
	$threads
	ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
	mode tcp
	maxconn $maxconn
	timeout connect 5s
	timeout client 10m
	timeout server 10m

frontend devices
	bind $listen ssl crt $pem
	default_backend gateway

backend gateway
	server gw $backend $proxy
CFG
setpriv --pdeathsig KILL -- "$gateway" gateway --listen "$backend" --admin "$admin" "$@" &
( sleep 5; rm -f "$cfg" ) &
exec "$haproxy" -db -f "$cfg"
