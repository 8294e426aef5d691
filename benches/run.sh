#!/usr/bin/env bash
# The benchmark: cskpi at 100,000 and 1,000,000 customers beside the scan
# floor (DataFusion reading every input column once) and a peer (the same
# KPIs in DuckDB, benches/peer_duckdb.py), with the ratios of the targets.
#
#   benches/run.sh                 # 100000 and 1000000 customers
#   benches/run.sh 20000           # any sizes
#
# Environment:
#   CSKPI_BENCH_DIR    where data sets are generated and kept between runs
#                      (default ~/.cache/cskpi/bench; 1M customers is ~0.5 GB)
#   MEMORY_LIMIT       cskpi --memory-limit and the peer's memory_limit (default 2G)
#   CSKPI_PROFILE      cargo profile of the cskpi binary: dev (default, the
#                      build the tests use: dependencies optimised) or release
#   COMPARE_UNLIMITED  1: also run cskpi without a memory limit and check that
#                      every output file is byte-identical to the limited run
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cskpi/target}"
bench_dir="${CSKPI_BENCH_DIR:-$HOME/.cache/cskpi/bench}"
limit="${MEMORY_LIMIT:-2G}"
profile="${CSKPI_PROFILE:-dev}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)

if ! python3 -c 'import duckdb, numpy, pytz' >/dev/null 2>&1; then
  echo "installing duckdb, numpy and pytz for the peer" >&2
  python3 -m pip install --quiet duckdb numpy pytz
fi

if [ "$profile" = release ]; then
  cargo build --release --locked --bin cskpi
  cskpi="$CARGO_TARGET_DIR/release/cskpi"
else
  cargo build --locked --bin cskpi
  cskpi="$CARGO_TARGET_DIR/debug/cskpi"
fi

threads="$(nproc)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); cskpi $profile build; duckdb $(python3 -c 'import duckdb; print(duckdb.__version__)')"

for customers in "${sizes[@]}"; do
  dir="$bench_dir/gen-$customers"
  mkdir -p "$dir"
  rm -rf "$dir/out" "$dir/peer-out" "$dir/out-unlimited"
  echo
  echo "== $customers customers ($dir)"
  # Generates the data on the first run (kept), then floor and run.
  "$cskpi" bench --customers "$customers" --dir "$dir" --memory-limit "$limit" --log warn \
    | tee "$dir/cskpi.txt"
  /usr/bin/time -f "peer peak_rss_kib %M" -o "$dir/peer-rss.txt" \
    python3 benches/peer_duckdb.py --job "$dir/job.toml" --out "$dir/peer-out" \
      --threads "$threads" --memory-limit "${limit}B" > "$dir/peer.txt"
  cat "$dir/peer-rss.txt" >> "$dir/peer.txt"
  python3 benches/compare_outputs.py "$dir/out" "$dir/peer-out" > "$dir/compare.txt" \
    && echo "outputs: cskpi and the peer agree (details in $dir/compare.txt)" \
    || echo "outputs: cskpi and the peer DIFFER, see $dir/compare.txt"
  if [ "${COMPARE_UNLIMITED:-0}" = 1 ]; then
    sed 's|^path = "out/"|path = "out-unlimited/"|' "$dir/job.toml" > "$dir/job-unlimited.toml"
    "$cskpi" run --config "$dir/job-unlimited.toml" --memory-limit 64G --log warn > /dev/null
    if diff -r -q -x _manifest.json "$dir/out" "$dir/out-unlimited" > /dev/null; then
      echo "outputs: identical with --memory-limit $limit and without a limit"
    else
      echo "outputs: DIFFER between --memory-limit $limit and no limit"
    fi
  fi
  python3 benches/report.py "$dir/cskpi.txt" "$dir/peer.txt" "$limit"
done
