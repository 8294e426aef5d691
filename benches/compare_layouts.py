#!/usr/bin/env python3
"""Checks that the layout of the inputs changed no number: cskpi's outputs
on the customer layout and on the date layout of the same rows.

    python3 benches/compare_layouts.py CUSTOMER_OUT DATE_OUT

Every file of every table must be byte-identical (the manifest aside),
except the CSI tables (csi_*), whose estimates sum floats in respondent
order: those are compared value by value, numbers within 1e-9 relative.
Exits 1 on a difference.
"""

import math
import re
import sys
from pathlib import Path

import duckdb

TOLERANCE = 1e-9
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def files(table):
    return sorted(p.relative_to(table) for p in table.rglob("*") if p.is_file())


def same_text(a, b):
    """Equal text around numbers that agree within TOLERANCE."""
    if NUMBER.sub("#", a) != NUMBER.sub("#", b):
        return False
    for x, y in zip(NUMBER.findall(a), NUMBER.findall(b)):
        x, y = float(x), float(y)
        if not math.isclose(x, y, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
            return False
    return True


def csi_rows(con, table):
    rows = con.execute(f"SELECT * FROM read_parquet('{table}/**/*.parquet')").fetchall()
    return sorted(tuple(str(v) for v in row) for row in rows)


def main():
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    con = duckdb.connect()
    problems = []
    tables = sorted(p.name for p in a.iterdir() if p.is_dir())
    for name in tables:
        ta, tb = a / name, b / name
        if files(ta) != files(tb):
            problems.append(f"{name}: different files")
            continue
        if name.startswith("csi_"):
            ra, rb = csi_rows(con, ta), csi_rows(con, tb)
            if len(ra) != len(rb) or not all(
                    same_text(x, y) for row_a, row_b in zip(ra, rb) for x, y in zip(row_a, row_b)):
                problems.append(f"{name}: values differ beyond {TOLERANCE}")
        elif any((ta / f).read_bytes() != (tb / f).read_bytes() for f in files(ta)):
            problems.append(f"{name}: files differ")
    if problems:
        print("layouts: outputs DIFFER: " + "; ".join(problems))
        sys.exit(1)
    print(f"layouts: the {len(tables)} tables are the same on both layouts "
          f"(byte-identical; csi_* within {TOLERANCE})")


if __name__ == "__main__":
    main()
