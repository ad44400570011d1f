#!/usr/bin/env bash
# cluster-target.sh: a `gwbench compare` target made of one gateway and one
# remote backend shard, whose measured PID is the gateway.
#
#   cluster-target.sh SWITCHYARD LINK_PORT SHARD_GOSSIP_PORT GATEWAY_GOSSIP_PORT GATEWAY_FLAGS...
#
# It starts `SWITCHYARD backend --app echo --shard s1` in the background,
# then `exec`s `SWITCHYARD gateway GATEWAY_FLAGS --gossip … --join <shard>`:
# the process gwbench started becomes the gateway (its CPU is the target's
# server_* figures), and the shard is its child (gwbench reports its CPU as
# children_*). The shard runs under `setpriv --pdeathsig KILL`, so it dies
# with the gateway however the gateway ends; gwbench compare also kills, by
# pid, any child of a target still running 3 s after the target exited.
# The gateway answers ERROR 503 until gossip has put the shard on its ring;
# compare waits for a successful handshake before measuring.
#
# In compare, {free1} {free2} {free3} are free loopback ports:
#
#   gwbench compare \
#     --target "embedded=$BIN/sygw-under-test gateway --listen {addr} --admin {admin} --max-conns 20000 --rate 1e9 --rate-burst 1000000000" \
#     --target "remote=tools/gwbench/cluster-target.sh $BIN/sygw-under-test {free1} {free2} {free3} --listen {addr} --admin {admin} --max-conns 20000 --rate 1e9 --rate-burst 1000000000" \
#     --scenarios cpu --reps 3
#
# Environment: CLUSTER_KEY_FILE (default $TMPDIR/gwbench-cluster.key,
# created with a random key if missing), BACKEND_APP (default echo),
# BACKEND_FLAGS (extra backend flags), LINK_TLS_DIR (when set: the link
# runs over mutual TLS, docs/links.md "TLS", with a CA and certificates
# for 127.0.0.1 kept in that directory, made with openssl if missing).
# A target sets it for itself by starting with env:
#
#     --target "remote-tls=env LINK_TLS_DIR=/tmp/gwbench-link-tls tools/gwbench/cluster-target.sh …"
set -euo pipefail
if [ $# -lt 4 ]; then
	sed -n '2,5p' "$0" >&2
	exit 2
fi
bin=$1 link=127.0.0.1:$2 shard_gossip=127.0.0.1:$3 gw_gossip=127.0.0.1:$4
shift 4

key=${CLUSTER_KEY_FILE:-${TMPDIR:-/tmp}/gwbench-cluster.key}
if [ ! -s "$key" ]; then
	tmp=$(mktemp "$key.XXXXXX")
	head -c 32 /dev/urandom | base64 > "$tmp"
	mv -f "$tmp" "$key" # atomic: targets started at once all read a whole key
fi

# linkPKI makes the link TLS files in $1 (made in a temporary directory
# and renamed: targets started at once all see whole files).
linkPKI() {
	local dir=$1 tmp name
	[ -s "$dir/gateway-key.pem" ] && return
	tmp=$(mktemp -d "$dir.XXXXXX")
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-subj /CN=gwbench-link-ca -keyout "$tmp/ca-key.pem" -out "$tmp/ca.pem" 2> /dev/null
	for name in shard gateway; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
			-keyout "$tmp/$name-key.pem" -out "$tmp/$name.csr" 2> /dev/null
		printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > "$tmp/$name.ext"
		openssl x509 -req -in "$tmp/$name.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" -CAcreateserial \
			-days 30 -extfile "$tmp/$name.ext" -out "$tmp/$name.pem" 2> /dev/null
	done
	mv -T "$tmp" "$dir" 2> /dev/null || rm -rf "$tmp" # another target made it first
}
shard_tls=() gw_tls=()
if [ -n "${LINK_TLS_DIR:-}" ]; then
	linkPKI "$LINK_TLS_DIR"
	shard_tls=(--link-tls-cert-file "$LINK_TLS_DIR/shard.pem" --link-tls-key-file "$LINK_TLS_DIR/shard-key.pem"
		--link-tls-ca-file "$LINK_TLS_DIR/ca.pem")
	gw_tls=(--link-tls-cert-file "$LINK_TLS_DIR/gateway.pem" --link-tls-key-file "$LINK_TLS_DIR/gateway-key.pem"
		--link-tls-ca-file "$LINK_TLS_DIR/ca.pem")
fi

# Not a subshell: the shard must be a child of this process, which becomes
# the gateway, for --pdeathsig to tie them together.
# shellcheck disable=SC2086 # BACKEND_FLAGS is a list of flags
if command -v setpriv > /dev/null; then
	setpriv --pdeathsig KILL -- "$bin" backend --app "${BACKEND_APP:-echo}" --shard s1 \
		--link "$link" --admin - --gossip "$shard_gossip" --cluster-key-file "$key" "${shard_tls[@]}" ${BACKEND_FLAGS:-} &
else
	echo "cluster-target.sh: setpriv (util-linux) not found" >&2
	exit 1
fi

exec "$bin" gateway --gossip "$gw_gossip" --join "$shard_gossip" --cluster-key-file "$key" "${gw_tls[@]}" "$@"
