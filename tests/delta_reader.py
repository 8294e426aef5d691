"""An independent reader of cskpi's Delta outputs for tests/it/delta.rs.

It uses the Python `deltalake` package (delta-rs's Python binding, with its
own build of the Delta protocol) and pyarrow, nothing of cskpi.

    delta_reader.py compare DELTA_ROOT VERSION|latest PARQUET_ROOT TABLE...
        Reads every TABLE at VERSION from DELTA_ROOT and the same table from
        cskpi's Parquet output at PARQUET_ROOT; prints one JSON line per
        table: {"table", "rows", "equal", "difference"}.
    delta_reader.py history DELTA_ROOT TABLE...
        Prints one JSON line per table: {"table", "commits": [{"version",
        "operation", "cskpi_run_id"}...]} newest first.
    delta_reader.py files DELTA_ROOT VERSION TABLE...
        Prints one JSON line per table: {"table", "files": [...]}, the data
        files of that version relative to the table, or {"table", "error"}
        when the version cannot be read.
    delta_reader.py foreign-commit DELTA_ROOT TABLE
        Commits a table property change to TABLE, as a writer other than
        cskpi would; prints {"table", "version"}.

DELTA_ROOT may be s3://...; then DELTA_STORAGE_OPTIONS (JSON) configures
the client.
"""

import json
import os
import pathlib
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable


def storage_options():
    text = os.environ.get("DELTA_STORAGE_OPTIONS")
    return json.loads(text) if text else None


def table_uri(root, table):
    return root.rstrip("/") + "/" + table


def open_table(root, table, version):
    version = None if version == "latest" else int(version)
    return DeltaTable(table_uri(root, table), version=version, storage_options=storage_options())


def canonical_rows(table):
    """Rows as sorted tuples of column-name-ordered values, types normalised
    so that both readers' spellings of one value compare equal."""
    names = sorted(table.column_names)
    columns = []
    for name in names:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us", tz=column.type.tz))
        columns.append(column.to_pylist())
    rows = [tuple(repr(v) for v in row) for row in zip(*columns)]
    rows.sort()
    return names, rows


def read_parquet_output(root, table):
    files = sorted(pathlib.Path(root, table).rglob("*.parquet"))
    parts = [pq.read_table(f) for f in files]
    return pa.concat_tables(parts, promote_options="permissive") if parts else None


def compare(root, version, parquet_root, tables):
    for table in tables:
        delta = open_table(root, table, version).to_pyarrow_table()
        expected = read_parquet_output(parquet_root, table)
        d_names, d_rows = canonical_rows(delta)
        if expected is None:
            e_names, e_rows = d_names, []
        else:
            e_names, e_rows = canonical_rows(expected)
        difference = None
        if d_names != e_names:
            difference = f"columns {d_names} != {e_names}"
        elif d_rows != e_rows:
            only_delta = sorted(set(d_rows) - set(e_rows))[:3]
            only_parquet = sorted(set(e_rows) - set(d_rows))[:3]
            difference = (
                f"{len(d_rows)} vs {len(e_rows)} rows; only in Delta {only_delta}; "
                f"only in Parquet {only_parquet}"
            )
        print(json.dumps({
            "table": table,
            "rows": len(d_rows),
            "equal": difference is None,
            "difference": difference,
        }))


def history(root, tables):
    for table in tables:
        commits = []
        for commit in open_table(root, table, "latest").history():
            commits.append({
                "version": commit.get("version"),
                "operation": commit.get("operation"),
                "cskpi_run_id": commit.get("cskpi_run_id"),
            })
        commits.sort(key=lambda c: -c["version"])
        print(json.dumps({"table": table, "commits": commits}))


def files(root, version, tables):
    for table in tables:
        try:
            dt = open_table(root, table, version)
            # Reading proves the files are there.
            dt.to_pyarrow_table()
            relative = [uri.split(f"/{table}/", 1)[-1] for uri in dt.file_uris()]
            print(json.dumps({"table": table, "files": sorted(relative)}))
        except Exception as error:  # noqa: BLE001 - reported to the test
            print(json.dumps({"table": table, "error": str(error)}))


def foreign_commit(root, table):
    dt = open_table(root, table, "latest")
    dt.alter.set_table_properties({"delta.logRetentionDuration": "interval 30 days"})
    print(json.dumps({"table": table, "version": dt.version()}))


def main(argv):
    command, root = argv[1], argv[2]
    if command == "compare":
        compare(root, argv[3], argv[4], argv[5:])
    elif command == "history":
        history(root, argv[3:])
    elif command == "foreign-commit":
        foreign_commit(root, argv[3])
    elif command == "files":
        files(root, argv[3], argv[4:])
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv)
    sys.stdout.flush()
    # The deltalake binding's threads can abort the interpreter at exit
    # ("terminate called without an active exception") after a failed read.
    os._exit(0)
