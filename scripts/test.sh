#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need beyond
# Rust (moto_server, an S3-compatible server the S3 tests start on
# loopback; deltalake and pyarrow, the Delta tests' reader; Chromium, the
# browser the report test opens the HTML report in), then runs
# every test. The target directory lives outside the
# clone ($HOME/.cache/cskpi/target unless CARGO_TARGET_DIR is set), so a
# developer's build and CI's (.ci/run) warm each other.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cskpi/target}"

# Console scripts of the interpreter pip installs into (pyenv shims appear
# only after a rehash, so put the real directory on PATH).
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH

if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import flask, moto.server' >/dev/null 2>&1; then
  echo "installing moto[server] for the S3 tests" >&2
  python3 -m pip install --quiet 'moto[server]>=5,<6'
fi

# The Delta tests read cskpi's Delta tables back with an independent
# reader, the Python deltalake package (delta-rs's own binding), and pyarrow.
if ! python3 -c 'import deltalake, pyarrow' >/dev/null 2>&1; then
  echo "installing deltalake and pyarrow for the Delta tests" >&2
  python3 -m pip install --quiet 'deltalake>=1.1,<2' 'pyarrow>=15'
fi

# The report test opens the run's report.html in headless Chromium (the
# Debian package; root installs it, anyone else needs sudo).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "installing chromium for the report test" >&2
  sudo_if_needed=()
  [ "$(id -u)" -eq 0 ] || sudo_if_needed=(sudo)
  "${sudo_if_needed[@]}" apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo_if_needed[@]}" apt-get install -y -q chromium >/dev/null
fi

cargo test --locked "$@"
