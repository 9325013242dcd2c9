#!/usr/bin/env bash
# The series recorded in docs/BENCHMARKS.md ("Cluster mode: what Redis costs"): fan-out configs
# alternating, three rounds, then relayed claims alternating, three rounds. Before each run it
# waits until the machine is quiet (under 25% of all CPUs busy over 3 s) and logs who was busy.
# Usage: cluster-series.sh [fanout|drop|all]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/tmp/bench_cluster}
export OUT
mkdir -p "$OUT"
busy_pct() {
  local a b
  a=($(head -1 /proc/stat)); sleep 3; b=($(head -1 /proc/stat))
  local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
  for i in 1 2 3 4 5 6 7 8; do total=$(( total + b[i] - a[i] )); done
  echo $(( 100 * (total - idle) / total ))
}
quiet() {
  local n=0 pct
  while pct=$(busy_pct); [ "$pct" -ge 25 ]; do
    n=$((n + 1)); echo "busy ${pct}%, waiting ($n)" >&2
    [ $n -gt 100 ] && { echo "machine never quiet" >&2; exit 1; }
  done
  echo "$(date -u +%FT%TZ) busy ${pct}% $(uptime)" >>"$OUT/series.log"
}
what=${1:-all}
if [ "$what" != drop ]; then
  for round in 1 2 3; do
    case $round in
      1) order="one one-redis three one-lb" ;;
      2) order="one-redis three one-lb one" ;;
      3) order="three one-lb one one-redis" ;;
    esac
    for cfg in $order; do quiet; echo "== $cfg r$round" | tee -a "$OUT/series.log"; "$HERE/cluster-cost.sh" "$cfg" "r$round" | tee -a "$OUT/series.log"; done
  done
fi
if [ "$what" != fanout ]; then
  for round in 1 2 3; do
    for cfg in drop-owner drop-relay; do
      [ $round = 2 ] && cfg=$([ $cfg = drop-owner ] && echo drop-relay || echo drop-owner)
      quiet; echo "== $cfg r$round" | tee -a "$OUT/series.log"; "$HERE/cluster-cost.sh" "$cfg" "r$round" | tee -a "$OUT/series.log"
    done
  done
fi
