#!/usr/bin/env bash
# One line per run of cluster-cost.sh: the figures the BENCHMARKS table shows.
# Usage: cluster-summary.sh [OUT]   (default /tmp/bench_cluster)
OUT=${1:-/tmp/bench_cluster}
for d in "$OUT"/*/; do
  r=$d/report.json
  [ -s "$r" ] || { echo "$(basename "$d"): no report (exit $(cat "$d/exit.txt" 2>/dev/null))"; continue; }
  cpu=$(awk '{n=$1; if (n == "tool") {tool=$2; next}; if (n ~ /^nginx-/) n="nginx"; a[n]+=$2; t+=$2} END {for (k in a) printf "%s=%.2f ", k, a[k]; printf "total=%.2f (tool %s)", t, tool}' "$d/cpu.txt")
  case $(jq -r .scenario "$r") in
    fanout)
      jq -r --arg name "$(basename "$d")" --arg cpu "$cpu" --arg exit "$(cat "$d/exit.txt")" \
        '"\($name): p50 \(.latency_ms.p50) p99 \(.latency_ms.p99) max \(.latency_ms.max) ms; published \(.published // .stats.published) delivered \(.delivered // .stats.delivered)/\(.expected_deliveries // .stats.expected_deliveries) lost \(.lost) ooo \(.out_of_order // .stats.out_of_order) errors \(.errors) connected \(.connected // .stats.connected) exit \($exit); node1 publish-phase cpu \(.server.cpu_s // .stats.server.cpu_s) s; whole-run cpu: \($cpu)"' "$r" ;;
    drop)
      jq -r --arg name "$(basename "$d")" --arg cpu "$cpu" --arg exit "$(cat "$d/exit.txt")" \
        '"\($name): p50 \(.latency_ms.p50) p99 \(.latency_ms.p99) max \(.latency_ms.max) ms; claims/s \(.claims_per_s // .stats.claims_per_s) reserved \(.reservations // .stats.reservations) oversold \(.oversold // .stats.oversold) lost \(.lost) errors \(.errors) invariants \(.invariants_held // .stats.invariants_held) exit \($exit); whole-run cpu: \($cpu)"' "$r" ;;
  esac
  grep lease "$d/target.txt" 2>/dev/null | sed 's/^/    /'
done
