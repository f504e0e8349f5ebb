#!/usr/bin/env bash
# The test suite (the README's test command): on SQLite always, and again on PostgreSQL when
# CALLBRIDGE_TEST_DATABASE_URL names a server (each test creates a database of its own there).
# Extra arguments go to `cargo nextest run`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
# The dashboard's browser test drives headless Chromium through chromedriver (Debian packages).
if ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver for the dashboard's browser test"
  apt-get install -y -q chromium chromium-driver >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }
fi
echo "== the suite on SQLite"
env -u CALLBRIDGE_TEST_DATABASE_URL cargo nextest run --workspace "$@"
if [ -n "${CALLBRIDGE_TEST_DATABASE_URL:-}" ]; then
  echo "== the same suite on PostgreSQL"
  cargo nextest run --workspace "$@"
else
  echo "PostgreSQL run skipped: CALLBRIDGE_TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1/postgres)"
fi
