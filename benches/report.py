#!/usr/bin/env python3
"""Puts `cskpi bench` and the DuckDB peer side by side, with the ratios the
performance targets are stated in (benches/README.md).

usage: python3 benches/report.py CSKPI_TXT PEER_TXT [MEMORY_LIMIT]
"""
import sys

# cskpi stage -> peer step doing the same work (the peer writes every table
# in one final step; cskpi writes each family's tables in its stage).
STAGES = [
    ("validation", "validate"), ("retention", "retention"), ("mrr", "mrr"),
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


def main():
    cskpi = read(sys.argv[1], "bench")
    peer = read(sys.argv[2], "peer")
    limit = sys.argv[3] if len(sys.argv) > 3 else "?"
    run, floor, total = cskpi["run_seconds"], cskpi["floor_seconds"], peer["total"]
    print(f"{'stage':<12} {'cskpi s':>9} {'peer s':>9}")
    for stage, step in STAGES:
        ours = cskpi.get(f"stage_seconds.{stage}")
        theirs = peer.get(step) if step else None
        cell = lambda v: f"{v:9.2f}" if v is not None else f"{'-':>9}"
        print(f"{stage:<12} {cell(ours)} {cell(theirs)}")
    print(f"{'total':<12} {run:9.2f} {total:9.2f}")
    print()
    rows = cskpi["rows_in"]
    out_bytes = sum(v for k, v in cskpi.items() if k.startswith("output_bytes."))
    print(f"input rows            {rows:,.0f} ({cskpi['input_bytes'] / 2**20:,.0f} MiB of Parquet)")
    print(f"cskpi rows/s          {rows / run:,.0f}")
    print(f"scan floor            {floor:.2f} s ({cskpi['floor_rows'] / floor:,.0f} rows/s)")
    print(f"output                {out_bytes / 2**20:,.1f} MiB")
    print(f"peak RSS              cskpi {cskpi.get('peak_rss_mib', float('nan')):,.0f} MiB, "
          f"peer {peer.get('peak_rss_kib', float('nan')) / 1024:,.0f} MiB (memory limit {limit})")
    print(f"cskpi / peer          {run / total:.2f}   (target <= 0.70)")
    print(f"cskpi / floor         {run / floor:.1f}   (target <= 3)")
    print(f"peer / floor          {total / floor:.1f}")


if __name__ == "__main__":
    main()
