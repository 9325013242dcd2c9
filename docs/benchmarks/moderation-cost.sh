#!/usr/bin/env bash
# One measured run of "what the moderation checks cost on the chat path" (docs/BENCHMARKS.md,
# "Moderation: what the checks cost"). Usage: moderation-cost.sh WORDS RUN
#   WORDS: 0 (no moderation) or 1000 (1,000 blocked words in four scripts, none in the chat)
#   RUN:   a label; results go to $OUT/RUN-WORDS.json
# A fresh engine on a fresh SQLite file per run; the seller publishes RATE chats/s of SIZE bytes
# to VIEWERS joined viewers for DURATION (liveshop-load fanout). Environment: BIN (dir with
# liveshop and liveshop-load), OUT, VIEWERS, RATE, SIZE, DURATION.
set -euo pipefail
WORDS=$1
RUN=$2
BIN=${BIN:-target/release}
OUT=${OUT:-/tmp/bench_moderation}
VIEWERS=${VIEWERS:-10}
RATE=${RATE:-2000}
SIZE=${SIZE:-200}
DURATION=${DURATION:-20s}
PORT=${PORT:-9300}
export LIVESHOP_JWT_SECRET=${LIVESHOP_JWT_SECRET:-moderation-bench-secret-0123456789ab}
mkdir -p "$OUT"
DIR=$(mktemp -d)
ulimit -n "$(ulimit -Hn)"
cleanup() {
  if [ -n "${ENGINE:-}" ]; then
    kill -TERM "$ENGINE" 2>/dev/null || true
    wait "$ENGINE" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT

env DATABASE_URL="sqlite://$DIR/bench.db?mode=rwc" LIVESHOP_LISTEN="127.0.0.1:$PORT" \
  LIVESHOP_CHAT_BURST=100000 LIVESHOP_CHAT_PER_SEC=100000 \
  LIVESHOP_FRAME_BURST=100000 LIVESHOP_FRAMES_PER_SEC=100000 \
  LIVESHOP_UPGRADES_PER_IP_PER_SEC=0 LIVESHOP_MAX_HTTP_CONNECTIONS_PER_IP=0 \
  "$BIN/liveshop" serve >"$DIR/engine.log" 2>&1 &
ENGINE=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done

URL="http://127.0.0.1:$PORT"
op=$("$BIN/liveshop" token --role operator --sub bench)
tenant=$(curl -fs -H "authorization: Bearer $op" -H 'content-type: application/json' \
  -d '{"slug":"bench","name":"Bench"}' "$URL/v1/tenants" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
seller=$("$BIN/liveshop" token --role seller --tenant "$tenant" --sub seller-1)
stream=$(curl -fs -H "authorization: Bearer $seller" -H 'content-type: application/json' \
  -d '{"title":"bench"}' "$URL/v1/streams" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -fs -X POST -H "authorization: Bearer $seller" "$URL/v1/streams/$stream/start" >/dev/null
if [ "$WORDS" != 0 ]; then
  python3 - "$WORDS" >"$DIR/words.json" <<'PY'
import json, sys
n = int(sys.argv[1])
scripts = ["forbidden{}", "запрет{}", "απαγόρευση{}", "禁止{}"]
print(json.dumps({"blocked_words": [scripts[i % 4].format(i) for i in range(n)]}))
PY
  curl -fs -X PATCH -H "authorization: Bearer $seller" -H 'content-type: application/json' \
    --data @"$DIR/words.json" "$URL/v1/streams/$stream/chat-settings" \
    | python3 -c 'import json,sys; print("blocked words:", len(json.load(sys.stdin)["blocked_words"]), file=sys.stderr)'
fi
"$BIN/liveshop-load" fanout --url "$URL" --secret "$LIVESHOP_JWT_SECRET" --tenant "$tenant" \
  --stream "$stream" --seller-token "$seller" -c "$VIEWERS" --rate "$RATE" --size "$SIZE" \
  --duration "$DURATION" --server-pid "$ENGINE" --no-progress --json >"$OUT/$RUN-$WORDS.json"
python3 - "$OUT/$RUN-$WORDS.json" "$VIEWERS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
viewers = int(sys.argv[2])
def find(d, key):
    if isinstance(d, dict):
        if key in d: return d[key]
        for v in d.values():
            x = find(v, key)
            if x is not None: return x
    return None
published = r["published"]
cpu_us = r["server"]["cpu_s"] * 1e6
lat = r["latency_ms"]
print(f"{sys.argv[1]}: {published} chats published ({r['publisher']['rejected']} rejected), "
      f"{r['delivered']} delivered, lost {r['lost']}; server {r['server']['cpu_s']} CPU-s = "
      f"{cpu_us / published:.1f} CPU-us per chat ({r['server_cpu_us_per_delivery']} per delivery); "
      f"latency p50 {lat['p50']} ms, p99 {lat['p99']} ms")
PY
