#!/usr/bin/env bash
# Runs HubSpot's official Python client (hubspot-api-client from PyPI, unchanged) against a
# freshly started `callbridge sandbox`. The venv lives in the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/pyenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -c "import hubspot" 2>/dev/null || "$venv/bin/pip" install --quiet "hubspot-api-client>=12,<13"
cargo build --quiet --bin callbridge
bin="${CARGO_TARGET_DIR:-target}/debug/callbridge"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
token="pat-na1-python-check-$RANDOM$RANDOM"
CALLBRIDGE_SANDBOX_TOKEN="$token" "$bin" sandbox --listen "127.0.0.1:$port" --tier starter > target/python-check-sandbox.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
  curl -fs "http://127.0.0.1:$port/_sandbox/health" >/dev/null 2>&1 && break
  sleep 0.1
done
"$venv/bin/python" scripts/python_client_check.py "http://127.0.0.1:$port" "$token"
