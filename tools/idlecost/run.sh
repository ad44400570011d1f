#!/usr/bin/env bash
# tools/idlecost/run.sh: the CPU that idle gateways cost, two builds side by
# side in one run (issue 11, point 5).
#
#   tools/idlecost/run.sh A-BIN B-BIN [GATEWAYS] [SECONDS] [cluster]
#
# Starts GATEWAYS idle gateways of each binary (default 5) with no devices;
# with "cluster", each set also gets one echo shard and the gateways join
# it by gossip (one cluster per binary, its own key). After 10 s of warm-up
# it reads the processes' user+system CPU from /proc over SECONDS (default
# 30) and prints both totals. Ports from 30000 up on 127.0.0.1. It kills
# only the processes it started.
set -euo pipefail
a=$1 b=$2 n=${3:-5} d=${4:-30} mode=${5:-}
dir=$(mktemp -d)
declare -A pids
port=30000
cleanup() { kill ${pids[a]:-} ${pids[b]:-} 2> /dev/null || true; wait 2> /dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for v in a b; do
	bin=$a; [ $v = b ] && bin=$b
	pids[$v]=""
	join=()
	if [ "$mode" = cluster ]; then
		head -c 32 /dev/urandom | base64 > "$dir/key.$v"
		"$bin" backend --app echo --shard s1 --link 127.0.0.1:$((port + 1)) --admin - \
			--gossip 127.0.0.1:$port --cluster-key-file "$dir/key.$v" > "$dir/shard.$v.log" 2>&1 &
		pids[$v]="$!"
		join=(--join 127.0.0.1:$port --cluster-key-file "$dir/key.$v")
		port=$((port + 2))
	fi
	for i in $(seq 1 "$n"); do
		gossip=()
		[ "$mode" = cluster ] && gossip=(--gossip 127.0.0.1:$port "${join[@]}" --node "$v$i")
		"$bin" gateway --listen 127.0.0.1:0 --admin - "${gossip[@]}" > "$dir/gw.$v$i.log" 2>&1 &
		pids[$v]="${pids[$v]} $!"
		port=$((port + 1))
	done
done
sleep 10
cpu() { local s=0 p f; for p in "$@"; do read -r -a f < /proc/"$p"/stat; s=$((s + f[13] + f[14])); done; echo $s; }
a0=$(cpu ${pids[a]}); b0=$(cpu ${pids[b]})
sleep "$d"
a1=$(cpu ${pids[a]}); b1=$(cpu ${pids[b]})
hz=$(getconf CLK_TCK)
echo "$n idle gateways${mode:+ + 1 shard (cluster)} over ${d}s: A $(((a1 - a0) * 1000 / hz)) ms CPU, B $(((b1 - b0) * 1000 / hz)) ms CPU"
