#!/usr/bin/env bash
# Durable acknowledgements with the load from a separate process (wrk): 64 connections,
# 8 KB Vapi reports, 15 seconds. Needs wrk (Debian package `wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "install wrk first (apt-get install wrk)"; exit 1; }
cargo build --release -q -p callbridge-bench
target/release/callbridge-bench ingest-server --listen 127.0.0.1:18080 > target/bench-ingest-server.log 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; cat target/bench-ingest-server.log' EXIT
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:18080/health >/dev/null && break; sleep 0.1; done
wrk -t2 -c64 -d"${DURATION:-15s}" --latency -s scripts/bench-ingest-wrk.lua http://127.0.0.1:18080
