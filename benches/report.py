#!/usr/bin/env python3
"""Puts `cskpi bench` and the DuckDB peer side by side, with the ratios the
performance targets are stated in (benches/README.md).

usage: python3 benches/report.py MEMORY_LIMIT CSKPI_TXT PEER_TXT [PEER_LIMITED_TXT]

PEER_TXT is the peer with DuckDB's defaults (every core, its own memory
limit), PEER_LIMITED_TXT the peer with cskpi's memory limit.
"""
import sys

# cskpi stage -> peer step doing the same work (the peer writes every table
# in one final step; cskpi writes each family's tables in its stage).
STAGES = [
    ("inputs", None), ("validation", "validate"), ("retention", "retention"), ("mrr", "mrr"),
    ("support", "support"), ("surveys", "surveys"), ("feedback", "feedback"),
    ("csi", "csi"), ("value", "value"), ("health", "health"),
    ("summary", "summary"), ("rejects", None), ("publishing", "write"),
]


def read(path, prefix):
    values = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == prefix:
                values[parts[1]] = float(parts[2])
    return values


def cell(v):
    return f"{v:10.2f}" if v is not None else f"{'-':>10}"


def main():
    limit = sys.argv[1]
    cskpi = read(sys.argv[2], "bench")
    peers = [("peer", read(sys.argv[3], "peer"))]
    if len(sys.argv) > 4:
        peers.append((f"peer {limit}", read(sys.argv[4], "peer")))
    run, floor = cskpi["run_seconds"], cskpi["floor_seconds"]
    print(f"{'stage':<12} {'cskpi s':>10}" + "".join(f" {name + ' s':>12}" for name, _ in peers))
    for stage, step in STAGES:
        ours = cskpi.get(f"stage_seconds.{stage}")
        print(f"{stage:<12} {cell(ours)}"
              + "".join(f"  {cell(p.get(step) if step else None)}" for _, p in peers))
    print(f"{'total':<12} {cell(run)}" + "".join(f"  {cell(p['total'])}" for _, p in peers))
    print()
    rows = cskpi["rows_in"]
    out_bytes = sum(v for k, v in cskpi.items() if k.startswith("output_bytes."))
    print(f"input rows            {rows:,.0f} ({cskpi['input_bytes'] / 2**20:,.0f} MiB of Parquet)")
    print(f"cskpi rows/s          {rows / run:,.0f}")
    print(f"scan floor            {floor:.2f} s ({cskpi['floor_rows'] / floor:,.0f} rows/s)")
    print(f"output                {out_bytes / 2**20:,.1f} MiB")
    print(f"peak RSS              cskpi {cskpi.get('peak_rss_mib', float('nan')):,.0f} MiB "
          f"(--memory-limit {limit})"
          + "".join(f", {name} {p.get('peak_rss_kib', float('nan')) / 1024:,.0f} MiB" for name, p in peers))
    for name, p in peers:
        print(f"cskpi / {name:<13} {run / p['total']:.2f}   (target <= 0.70, then 0.50)")
    print(f"cskpi / floor         {run / floor:.1f}")
    for name, p in peers:
        print(f"{name + ' / floor':<21} {p['total'] / floor:.1f}")


if __name__ == "__main__":
    main()
