#!/usr/bin/env bash
# make demo: 2 gateways and 3 backend shards (the counter app) on loopback,
# joined by gossip; devices talk through both gateways and each reply says
# which shard served it. Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-bin/switchyard}
BASE=${DEMO_PORT_BASE:-17400}
dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT
head -c 32 /dev/urandom | base64 > "$dir/cluster.key"

start() { # name, command...
	local name=$1; shift
	"$@" > "$dir/$name.log" 2>&1 &
	pids+=($!)
}
seed=127.0.0.1:$((BASE + 100))
for i in 0 1 2; do
	shard=$(printf '\x'"$(printf %x $((97 + i)))")   # a, b, c
	join=()
	[ "$i" -gt 0 ] && join=(--join "$seed")
	start "backend-$shard" "$BIN" backend --app counter --shard "$shard" \
		--link 127.0.0.1:$((BASE + 10 + i)) --admin 127.0.0.1:$((BASE + 90 + i)) --gossip 127.0.0.1:$((BASE + 100 + i)) \
		--cluster-key-file "$dir/cluster.key" --drain-timeout 2s "${join[@]}"
done
for i in 0 1; do
	start "gateway-$i" "$BIN" gateway --listen 127.0.0.1:$((BASE + i)) --admin 127.0.0.1:$((BASE + 80 + i)) \
		--gossip 127.0.0.1:$((BASE + 110 + i)) --join "$seed" --cluster-key-file "$dir/cluster.key" \
		--drain-timeout 2s --goaway-retry 200ms
done

# Wait until both gateways see all three shards.
for i in 0 1; do
	for _ in $(seq 100); do
		grep -qE 'msg="ring changed".*shards=3' "$dir/gateway-$i.log" && break
		sleep 0.1
	done
done
echo "cluster up: gateways 127.0.0.1:$BASE and 127.0.0.1:$((BASE + 1)), shards a b c"
echo

for dev in sensor-1 sensor-2 sensor-3 sensor-4 sensor-5 sensor-6; do
	for i in 0 1; do
		printf 'ping\n' | "$BIN" client --addr 127.0.0.1:$((BASE + i)) --id "$dev" --wait 1s |
			sed "s/^/$dev via gateway-$i: shard, count = /"
	done
done
echo
echo "each device lands on the same shard through either gateway: every node"
echo "builds the same ring from gossip. Each client run opens a new session,"
echo "so the count starts at 1 again."
