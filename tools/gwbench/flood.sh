#!/usr/bin/env bash
# flood.sh measures quiet devices' echo latency before and during one
# flooder (gwbench cpu --flooders, docs/benchmarks.md "One flooder"): for
# each gateway binary given, REPS times, a fresh gateway with the default
# configuration per phase, phases interleaved. JSON lines go to OUT; the
# medians are printed per binary and phase.
#
#   tools/gwbench/flood.sh NAME=BINARY ...       # e.g. new=/tmp/sy old=/tmp/sy-old
#
# Environment: REPS (3), DURATION (10s), CONNS (100 quiet devices), RATE
# (2000 frames/s over all of them: open loop, latency from the scheduled
# send time), FLOOD_RETRY (10ms: how long a refused flooder waits before it
# dials again; 0s: at once), OUT (default a new file under /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPS=${REPS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-100}
RATE=${RATE:-2000}
FLOOD_RETRY=${FLOOD_RETRY:-10ms}
OUT=${OUT:-$(mktemp /tmp/flood.XXXXXX.jsonl)}
BIN=$(mktemp -d /tmp/flood-bin.XXXXXX)
go build -o "$BIN/gwbench" ./tools/gwbench
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for rep in $(seq "$REPS"); do
	for target in "$@"; do
		name=${target%%=*} bin=${target#*=}
		for flooders in 0 1; do
			addr=127.0.0.1:$(port) admin=127.0.0.1:$(port)
			"$bin" gateway --listen "$addr" --admin "$admin" 2>"$BIN/gw.log" &
			pid=$!
			for _ in $(seq 100); do curl -fs "http://$admin/healthz" >/dev/null && break; sleep 0.1; done
			"$BIN/gwbench" cpu --addr "$addr" --pid "$pid" --name "$name" --conns "$CONNS" --rate "$RATE" \
				--duration "$DURATION" --flooders "$flooders" --flood-retry "$FLOOD_RETRY" --out "$OUT" >/dev/null
			curl -fs "http://$admin/metrics" | grep -E '^switchyard_disconnects_total\{reason="(unread_limit|rate_flood|rate_limit|slow_consumer)"\}' | tr '\n' ' ' >&2 || true
			echo "<- $name flooders=$flooders rep=$rep" >&2
			kill "$pid"
			wait "$pid" || true
		done
	done
done
echo "results: $OUT" >&2
python3 - "$OUT" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = sorted({(r["target"], r["params"]["flooders"]) for r in rows})
print("| gateway | flooders | runs | quiet p50 ms | quiet p99 ms | quiet p99.9 ms | gateway CPU µs/frame | flood connects | flood refused | flood MB written |")
print("|---|---|---|---|---|---|---|---|---|---|")
for t, f in keys:
    rs = [r["results"] for r in rows if r["target"] == t and r["params"]["flooders"] == f]
    med = lambda k: statistics.median(x.get(k, 0) for x in rs)
    print(f"| {t} | {f} | {len(rs)} | {med('latency_p50_us')/1e3:.2f} | {med('latency_p99_us')/1e3:.2f} | {med('latency_p999_us')/1e3:.2f} | {med('server_us_per_frame'):.2f} | {med('flood_connects'):.0f} | {med('flood_refused'):.0f} | {med('flood_mb_written'):.0f} |")
PY
