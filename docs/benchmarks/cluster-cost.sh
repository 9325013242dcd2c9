#!/usr/bin/env bash
# One measured run of "what cluster mode costs" (docs/BENCHMARKS.md, "Cluster mode: what Redis
# costs"). Usage: cluster-cost.sh CONFIG RUN
#   CONFIG: one        one node, no Redis, the tool straight at it
#           one-redis  one node with REDIS_URL, the tool straight at it
#           one-lb     one node, no Redis, behind the same balancer as `three`
#           three      three nodes with Redis behind the balancer, routing by client address:
#                      127.0.0.2 (the tool's seller connection with --source-ips 3) and a third of
#                      the viewers to node 1 (the owner), 127.0.0.1 to node 2, 127.0.0.3 to node 3
#           drop-owner three nodes with Redis, `liveshop-load drop` straight at the owner (node 1)
#           drop-relay the same, at node 2 (every claim relayed to node 1 over Redis)
#   RUN:    a label; results go to $OUT/RUN-CONFIG/
# Each run gets a fresh PostgreSQL database and a fresh redis-server, started and removed here.
# Environment: BIN (dir with liveshop and liveshop-load), OUT, VIEWERS, RATE, SIZE, DURATION,
# BUYERS, UNITS, CLAIM_RATE, LB (nat or nginx), NAT_IDLE (1: an idle NAT table loaded).
set -euo pipefail
CONFIG=$1
RUN=$2
BIN=${BIN:-target/release}
OUT=${OUT:-/tmp/bench_cluster}
VIEWERS=${VIEWERS:-3000}
RATE=${RATE:-20}
SIZE=${SIZE:-200}
DURATION=${DURATION:-25s}
BUYERS=${BUYERS:-2000}
UNITS=${UNITS:-500}
CLAIM_RATE=${CLAIM_RATE:-500}
REDIS_PORT=${REDIS_PORT:-6391}
LB_PORT=9200
export LIVESHOP_JWT_SECRET=${LIVESHOP_JWT_SECRET:-cluster-bench-secret-0123456789abcdef}
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$OUT/$RUN-$CONFIG
DB=bench_cluster_$(echo "$RUN-$CONFIG" | tr -c 'a-z0-9\n' '_')
mkdir -p "$DIR"
ulimit -n "$(ulimit -Hn)"

PIDS=()     # every process this run started, killed at the end
NODES=()    # engine pids, node 1 first
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -f "$DIR/nginx.pid" ] && kill -QUIT "$(cat "$DIR/nginx.pid")" 2>/dev/null || true
  [ -n "${NAT:-}" ] && nft delete table ip liveshop_bench 2>/dev/null || true
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  dropdb -h 127.0.0.1 -U postgres --if-exists "$DB" || true
}
trap cleanup EXIT

# CPU seconds (user+system) of a pid, from /proc/PID/stat fields 14 and 15.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f", ($12+$13)/t}' "/proc/$1/stat"; }

createdb -h 127.0.0.1 -U postgres "$DB"
use_redis=0; nodes=1; lb=0
case $CONFIG in
  one) ;;
  one-redis) use_redis=1 ;;
  one-lb) lb=1 ;;
  three) use_redis=1; nodes=3; lb=1 ;;
  drop-owner|drop-relay) use_redis=1; nodes=3 ;;
  *) echo "unknown config $CONFIG" >&2; exit 1 ;;
esac
REDIS_PID=
if [ $use_redis = 1 ]; then
  redis-server --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
    --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
  for _ in $(seq 50); do [ -s "$DIR/redis.pid" ] && break; sleep 0.1; done
  REDIS_PID=$(cat "$DIR/redis.pid")
fi

start_node() {
  local i=$1
  local redis=()
  [ $use_redis = 1 ] && redis=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT/")
  env DATABASE_URL="postgres://postgres@127.0.0.1:5432/$DB" "${redis[@]}" \
    LIVESHOP_NODE_ID="node-$i" LIVESHOP_LISTEN="127.0.0.1:920$i" \
    LIVESHOP_UPGRADES_PER_IP_PER_SEC=0 LIVESHOP_MAX_HTTP_CONNECTIONS_PER_IP=0 \
    LIVESHOP_CHAT_BURST=1000 LIVESHOP_CHAT_PER_SEC=1000 \
    "$BIN/liveshop" serve >"$DIR/node-$i.log" 2>&1 &
  PIDS+=($!); NODES+=($!)
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:920$i/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "node $i not ready" >&2; cat "$DIR/node-$i.log" >&2; exit 1
}
for i in $(seq "$nodes"); do start_node "$i"; done

# The balancer in front of `three` and `one-lb`: port 9200 routed by client address, either in
# the kernel (LB=nat, the default: an nftables DNAT rule, no process of its own) or by an nginx
# TCP proxy (LB=nginx: one worker process, which shares the two cores).
NGINX_PIDS=()
if [ $lb = 1 ]; then
  if [ "$nodes" = 3 ]; then
    routes=("127.0.0.2 9201" "127.0.0.1 9202" "127.0.0.3 9203")
  else
    routes=("127.0.0.1 9201" "127.0.0.2 9201" "127.0.0.3 9201")
  fi
  if [ "${LB:-nat}" = nat ]; then
    {
      echo "table ip liveshop_bench {"
      echo "  chain out {"
      echo "    type nat hook output priority -100; policy accept;"
      for r in "${routes[@]}"; do
        set -- $r; echo "    ip saddr $1 tcp dport $LB_PORT dnat to 127.0.0.1:$2"
      done
      echo "  }"
      echo "}"
    } >"$DIR/nat.nft"
    nft -f "$DIR/nat.nft"
    NAT=1
  else
    map=""
    for r in "${routes[@]}"; do set -- $r; map="$map $1 127.0.0.1:$2;"; done
    cat >"$DIR/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
worker_rlimit_nofile 19000;
pid $DIR/nginx.pid;
error_log $DIR/nginx-error.log warn;
events { worker_connections 18000; }
stream {
  map \$remote_addr \$node { $map }
  server { listen 127.0.0.1:$LB_PORT backlog=4096; proxy_pass \$node; proxy_timeout 1h; }
}
NGINX
    nginx -c "$DIR/nginx.conf" -p "$DIR" -e "$DIR/nginx-error.log"
    for _ in $(seq 50); do [ -s "$DIR/nginx.pid" ] && break; sleep 0.1; done
    NGINX_PIDS=($(cat "$DIR/nginx.pid") $(pgrep -P "$(cat "$DIR/nginx.pid")"))
  fi
fi

# NAT_IDLE=1: load a NAT table whose one rule matches no traffic of the run, to see what
# connection tracking alone costs a configuration that does not go through the balancer.
if [ "${NAT_IDLE:-0}" = 1 ] && [ $lb = 0 ]; then
  printf 'table ip liveshop_bench {\n  chain out {\n    type nat hook output priority -100; policy accept;\n    ip saddr 127.0.0.99 tcp dport %s dnat to 127.0.0.1:9201\n  }\n}\n' "$LB_PORT" >"$DIR/nat.nft"
  nft -f "$DIR/nat.nft"
  NAT=1
fi

read -r TENANT STREAM < <(python3 "$HERE/cluster_setup.py" http://127.0.0.1:9201)
echo "tenant $TENANT stream $STREAM" >"$DIR/target.txt"
if [ $use_redis = 1 ]; then
  sleep 0.5
  echo "lease: $(redis-cli -p "$REDIS_PORT" GET "liveshop:{$STREAM}:lease")" >>"$DIR/target.txt"
fi

# CPU of every engine, redis-server and nginx process before and after the tool's run.
procs() {
  for i in "${!NODES[@]}"; do echo "node-$((i + 1)) ${NODES[$i]}"; done
  if [ -n "$REDIS_PID" ]; then echo "redis $REDIS_PID"; fi
  for p in "${NGINX_PIDS[@]}"; do echo "nginx-$p $p"; done
}
snap() { procs | while read -r name pid; do echo "$name $(cpu_s "$pid")"; done; }
snap >"$DIR/cpu-before.txt"

common=(--tenant "$TENANT" --stream "$STREAM" --secret "$LIVESHOP_JWT_SECRET" --threads 1
  --no-progress --json --server-pid "${NODES[0]}")
case $CONFIG in
  one|one-redis) url=http://127.0.0.1:9201 ;;
  one-lb|three) url=http://127.0.0.1:$LB_PORT ;;
  drop-owner) url=http://127.0.0.1:9201 ;;
  drop-relay) url=http://127.0.0.1:9202 ;;
esac
case $CONFIG in
  drop-*)
    cmd=("$BIN/liveshop-load" drop --url "$url" "${common[@]}" --buyers "$BUYERS" --units "$UNITS"
      --rate "$CLAIM_RATE" --source-ips 4) ;;
  *)
    cmd=("$BIN/liveshop-load" fanout --url "$url" "${common[@]}" -c "$VIEWERS" --rate "$RATE"
      --size "$SIZE" --duration "$DURATION" --source-ips 3) ;;
esac
echo "${cmd[*]}" >"$DIR/command.txt"
# Busy CPU seconds of the whole machine (all cores, /proc/stat), to see what else ran meanwhile.
machine_busy() { awk -v t="$(getconf CLK_TCK)" 'NR==1 {printf "%.2f", ($2+$3+$4+$7+$8+$9)/t}' /proc/stat; }
busy_before=$(machine_busy)
start=$(date +%s.%N)
set +e
TIMEFORMAT='%U %S'
{ time "${cmd[@]}" >"$DIR/report.json" 2>"$DIR/summary.txt"; } 2>"$DIR/tool-time.txt"
echo $? >"$DIR/exit.txt"
set -e
end=$(date +%s.%N)
snap >"$DIR/cpu-after.txt"
busy_after=$(machine_busy)
echo "$start $end" >"$DIR/wall.txt"
for i in $(seq "$nodes"); do curl -s "http://127.0.0.1:920$i/metrics" >"$DIR/metrics-node-$i.txt" || true; done
if [ $use_redis = 1 ]; then redis-cli -p "$REDIS_PORT" INFO commandstats >"$DIR/redis-commandstats.txt"; fi
paste -d' ' "$DIR/cpu-before.txt" "$DIR/cpu-after.txt" | awk '{printf "%s %.2f\n", $1, $4-$2}' >"$DIR/cpu.txt"
awk '{printf "tool %.2f\n", $1+$2}' "$DIR/tool-time.txt" >>"$DIR/cpu.txt"
ours=$(awk '{t+=$2} END {printf "%.2f", t}' "$DIR/cpu.txt")
echo "machine-busy $(echo "$busy_after - $busy_before" | bc) ours $ours" >"$DIR/machine.txt"
cat "$DIR/target.txt" "$DIR/cpu.txt" "$DIR/machine.txt"
echo "exit $(cat "$DIR/exit.txt")"
