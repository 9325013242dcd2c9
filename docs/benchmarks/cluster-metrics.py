#!/usr/bin/env python3
"""Summarises liveshop_redis_duration_seconds{op} and liveshop_relay_duration_seconds{outcome}
from scraped /metrics files: count, mean, and a rough p99 (the upper bound of the first bucket
holding 99% of the observations). Usage: cluster-metrics.py metrics-node-1.txt [...]"""
import re, sys
from collections import defaultdict

LINE = re.compile(r'^(liveshop_(?:redis|relay)_duration_seconds)_(bucket|sum|count)\{([^}]*)\} (\S+)$')
for path in sys.argv[1:]:
    buckets, sums, counts = defaultdict(list), {}, {}
    for line in open(path):
        m = LINE.match(line.strip())
        if not m:
            continue
        name, part, labels, value = m.groups()
        lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        key = (name.split("_")[1], lab.get("op") or lab.get("outcome"))
        if part == "bucket":
            le = float("inf") if lab["le"] == "+Inf" else float(lab["le"])
            buckets[key].append((le, float(value)))
        elif part == "sum":
            sums[key] = float(value)
        else:
            counts[key] = float(value)
    print(f"== {path}")
    print(f"{'metric':6} {'op/outcome':18} {'count':>8} {'mean ms':>9} {'p99 <= ms':>10}")
    for key in sorted(counts):
        n = counts[key]
        if n == 0:
            continue
        p99 = next((le for le, c in sorted(buckets[key]) if c >= 0.99 * n), float("inf"))
        print(f"{key[0]:6} {key[1]:18} {int(n):8d} {1000 * sums[key] / n:9.3f} {1000 * p99:10.1f}")
