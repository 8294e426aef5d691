#!/usr/bin/env bash
# The benchmark: cskpi at 100,000 and 1,000,000 customers, on data laid out
# by date (as warehouses hold it) and by customer, beside the scan floor
# (DataFusion reading every input column once) and a peer (the same KPIs in
# DuckDB, benches/peer_duckdb.py) run with DuckDB's defaults and again with
# cskpi's memory limit.
#
#   benches/run.sh                 # 100000 and 1000000 customers, both layouts
#   benches/run.sh 20000           # any sizes
#   LAYOUTS=date benches/run.sh 1000000
#
# Environment:
#   CSKPI_BENCH_DIR    where data sets are generated and kept between runs
#                      (default ~/.cache/cskpi/bench; 1M customers is ~0.5 GB
#                      per layout)
#   LAYOUTS            the `cskpi gen --layout` values to run (default "date customer")
#   MEMORY_LIMIT       cskpi --memory-limit, and the limited peer's (default 2G)
#   CSKPI_PROFILE      cargo profile of the cskpi binary: dev (default, the
#                      build the tests use: dependencies optimised) or release
#   COMPARE_UNLIMITED  1: also run cskpi without a memory limit and check that
#                      every output file is byte-identical to the limited run's
#   PEER_LIMITED       0: skip the peer run with the memory limit (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cskpi/target}"
bench_dir="${CSKPI_BENCH_DIR:-$HOME/.cache/cskpi/bench}"
limit="${MEMORY_LIMIT:-2G}"
profile="${CSKPI_PROFILE:-dev}"
read -r -a layouts <<< "${LAYOUTS:-date customer}"
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

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); cskpi $profile build at $(git rev-parse --short HEAD); duckdb $(python3 -c 'import duckdb; print(duckdb.__version__)')"

# peer RUN_DIR OUT NAME [ARGS...]: the DuckDB peer, its steps in NAME.txt.
peer() {
  local dir="$1" out="$2" name="$3"
  shift 3
  /usr/bin/time -f "peer peak_rss_kib %M" -o "$dir/$name-rss.txt" \
    python3 benches/peer_duckdb.py --job "$dir/job.toml" --out "$dir/$out" "$@" > "$dir/$name.txt"
  cat "$dir/$name-rss.txt" >> "$dir/$name.txt"
}

for customers in "${sizes[@]}"; do
  for layout in "${layouts[@]}"; do
    dir="$bench_dir/gen-$customers-$layout"
    mkdir -p "$dir"
    rm -rf "$dir/out" "$dir/peer-out" "$dir/peer-limited-out" "$dir/out-unlimited"
    echo
    echo "== $customers customers, $layout layout ($dir)"
    # The data is generated once (kept), in a process of its own: the
    # allocator keeps much of what generating freed, which a timed run in
    # the same process would count in its peak RSS (3.8 GiB instead of
    # 1.5 GiB at 1M customers). Then floor and run.
    # A folder an older generator made is refused (its numbers would not
    # compare with this build's data): made again from scratch.
    if ! gen_out=$("$cskpi" bench --customers "$customers" --layout "$layout" --dir "$dir" \
        --generate-only --log warn 2>&1); then
      if ! grep -q "remove the folder to generate it again" <<< "$gen_out"; then
        echo "$gen_out" >&2
        exit 1
      fi
      echo "$dir: made by another generator version, generating it again"
      rm -rf "$dir"
      mkdir -p "$dir"
      gen_out=$("$cskpi" bench --customers "$customers" --layout "$layout" --dir "$dir" \
        --generate-only --log warn)
    fi
    echo "$gen_out" | tee "$dir/gen.txt"
    "$cskpi" bench --customers "$customers" --layout "$layout" --dir "$dir" \
      --memory-limit "$limit" --log warn | tee "$dir/cskpi.txt"
    # DuckDB as it comes: every core, its default memory limit (80% of RAM).
    peer "$dir" peer-out peer
    if [ "${PEER_LIMITED:-1}" = 1 ]; then
      peer "$dir" peer-limited-out peer-limited --threads "$(nproc)" --memory-limit "${limit}B"
    fi
    python3 benches/compare_outputs.py "$dir/out" "$dir/peer-out" > "$dir/compare.txt" \
      && echo "outputs: cskpi and the peer agree (details in $dir/compare.txt)" \
      || echo "outputs: cskpi and the peer DIFFER, see $dir/compare.txt"
    if [ "${COMPARE_UNLIMITED:-0}" = 1 ]; then
      sed 's|^path = "out/"|path = "out-unlimited/"|' "$dir/job.toml" > "$dir/job-unlimited.toml"
      "$cskpi" run --config "$dir/job-unlimited.toml" --memory-limit 64G --log warn > /dev/null
      # `cskpi run` also renders report.html (`cskpi bench` does not): the
      # tables and their footers are what must match.
      if diff -r -q -x _manifest.json -x report.html "$dir/out" "$dir/out-unlimited" > /dev/null; then
        echo "outputs: identical with --memory-limit $limit and without a limit"
      else
        echo "outputs: DIFFER between --memory-limit $limit and no limit"
      fi
    fi
    limited=()
    [ "${PEER_LIMITED:-1}" = 1 ] && limited=("$dir/peer-limited.txt")
    python3 benches/report.py "$limit" "$dir/cskpi.txt" "$dir/peer.txt" "${limited[@]}"
  done
  # The layout must not change any number.
  if [ -d "$bench_dir/gen-$customers-date/out" ] && [ -d "$bench_dir/gen-$customers-customer/out" ]; then
    echo
    python3 benches/compare_layouts.py "$bench_dir/gen-$customers-customer/out" \
      "$bench_dir/gen-$customers-date/out" || true
  fi
done
