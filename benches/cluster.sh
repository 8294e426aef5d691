#!/usr/bin/env bash
# The job on a loopback Ballista cluster beside the same job run locally:
# one `cskpi scheduler` and two `cskpi executor` processes of one core
# each on 127.0.0.1, the data set of benches/run.sh (date layout), the
# scratch directory and outputs on this machine's disk (--shared-fs).
# Prints both runs' total and per-stage times, the driver's and each
# executor's peak RSS, and checks that the cluster published the local
# run's bytes.
#
#   benches/cluster.sh              # 1,000,000 customers
#   benches/cluster.sh 100000       # any sizes
#
# Environment:
#   CSKPI_BENCH_DIR    as in benches/run.sh (the data sets are shared with it)
#   LAYOUT             the `cskpi gen --layout` (default date)
#   MEMORY_LIMIT       the local run's --memory-limit (default 2G)
#   EXECUTOR_MEMORY    each executor's --memory-limit (default 1G: the two
#                      hold what the local run may)
#   CSKPI_BIN          a cskpi binary to run instead of building the dev one
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cskpi/target}"
bench_dir="${CSKPI_BENCH_DIR:-$HOME/.cache/cskpi/bench}"
layout="${LAYOUT:-date}"
limit="${MEMORY_LIMIT:-2G}"
executor_memory="${EXECUTOR_MEMORY:-1G}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000)

if [ -n "${CSKPI_BIN:-}" ]; then
  cskpi="$CSKPI_BIN"
else
  cargo build --locked --bin cskpi
  cskpi="$CARGO_TARGET_DIR/debug/cskpi"
fi
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); cskpi at $(git rev-parse --short HEAD) ($cskpi)"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cluster_pids=()
stop_cluster() {
  # Each pid is a /usr/bin/time: its child is stopped, so that it
  # writes the child's peak RSS.
  for pid in "${cluster_pids[@]}"; do
    pkill -TERM -P "$pid" 2>/dev/null || true
  done
  for pid in "${cluster_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  cluster_pids=()
}
trap stop_cluster EXIT

# start_cluster DIR: a scheduler and two one-core executors, each under
# /usr/bin/time (peak RSS in DIR/cluster/*-rss.txt when it stops); sets
# $cluster_url once every executor has registered.
start_cluster() {
  local dir="$1/cluster" port
  rm -rf "$dir"
  mkdir -p "$dir"
  port=$(free_port)
  /usr/bin/time -f "%M" -o "$dir/scheduler-rss.txt" \
    "$cskpi" scheduler --bind 127.0.0.1 --external-host 127.0.0.1 --port "$port" \
    2> "$dir/scheduler.log" &
  cluster_pids+=($!)
  for _ in $(seq 300); do
    (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  for i in 0 1; do
    /usr/bin/time -f "%M" -o "$dir/executor-$i-rss.txt" \
      "$cskpi" executor --scheduler "127.0.0.1:$port" --bind 127.0.0.1 \
      --external-host 127.0.0.1 --port "$(free_port)" --grpc-port "$(free_port)" \
      --cores 1 --memory-limit "$executor_memory" --work-dir "$dir/executor-$i" \
      2> "$dir/executor-$i.log" &
    cluster_pids+=($!)
  done
  for i in 0 1; do
    for _ in $(seq 600); do
      grep -qs "Executor registration succeed" "$dir/executor-$i.log" && break
      sleep 0.1
    done
    grep -qs "Executor registration succeed" "$dir/executor-$i.log" \
      || { echo "executor $i did not register; its log: $dir/executor-$i.log" >&2; exit 1; }
  done
  cluster_url="df://127.0.0.1:$port"
}

for customers in "${sizes[@]}"; do
  dir="$bench_dir/gen-$customers-$layout"
  mkdir -p "$dir"
  echo
  echo "== $customers customers, $layout layout ($dir)"
  if ! "$cskpi" bench --customers "$customers" --layout "$layout" --dir "$dir" \
      --generate-only --log warn > /dev/null 2> "$dir/gen-err.txt"; then
    echo "generating failed (or an older generator made $dir: remove it): $dir/gen-err.txt" >&2
    exit 1
  fi
  rm -rf "$dir/out" "$dir/out-local" "$dir/scratch"
  "$cskpi" bench --customers "$customers" --layout "$layout" --dir "$dir" \
    --memory-limit "$limit" --log warn > "$dir/local.txt"
  mv "$dir/out" "$dir/out-local"

  start_cluster "$dir"
  mkdir -p "$dir/scratch"
  "$cskpi" bench --customers "$customers" --layout "$layout" --dir "$dir" \
    --cluster "$cluster_url" --shared-fs --temp-dir "$dir/scratch" --log warn > "$dir/cluster.txt"
  jobs_run=$(grep -c "Job finished successfully" "$dir/cluster/scheduler.log" || true)
  stop_cluster

  if diff -r -q -x _manifest.json "$dir/out-local" "$dir/out" > "$dir/cluster-diff.txt"; then
    same="every output file byte-identical to the local run's"
  else
    same="outputs DIFFER from the local run's: $dir/cluster-diff.txt"
  fi
  python3 - "$dir" "$same" "$jobs_run" <<'EOF'
import sys
from pathlib import Path

dir, same, jobs = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

def numbers(name):
    out = {}
    for line in (dir / name).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "bench":
            out[parts[1]] = float(parts[2])
    return out

def rss(name):
    path = dir / "cluster" / name
    try:
        return f"{int(path.read_text().split()[-1]) / 1024:.0f} MiB"
    except (OSError, ValueError, IndexError):
        return "?"

local, cluster = numbers("local.txt"), numbers("cluster.txt")
stages = [k for k in local if k.startswith("stage_seconds.")]
print(f"{'':28} {'local':>10} {'cluster':>10} {'ratio':>7}")
for key in stages + ["run_seconds"]:
    a, b = local.get(key), cluster.get(key)
    if a is None or b is None:
        continue
    ratio = f"{b / a:.1f}x" if a > 0 else ""
    print(f"{key.removeprefix('stage_seconds.'):28} {a:>9.2f}s {b:>9.2f}s {ratio:>7}")
print(f"{'peak RSS, driver':28} {local.get('peak_rss_mib', 0):>7.0f} MiB {cluster.get('peak_rss_mib', 0):>6.0f} MiB")
print(f"peak RSS, scheduler {rss('scheduler-rss.txt')}, executor 0 {rss('executor-0-rss.txt')}, executor 1 {rss('executor-1-rss.txt')}")
print(f"Ballista jobs completed: {jobs}")
print(f"outputs: {same}")
EOF
  rm -rf "$dir/out"
  mv "$dir/out-local" "$dir/out"
done
