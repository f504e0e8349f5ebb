#!/usr/bin/env bash
# The test suite (the README's test command): on SQLite always, and again on PostgreSQL when
# CALLBRIDGE_TEST_DATABASE_URL names a server (each test creates a database of its own there).
# Extra arguments go to `cargo nextest run`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
echo "== the suite on SQLite"
env -u CALLBRIDGE_TEST_DATABASE_URL cargo nextest run --workspace "$@"
if [ -n "${CALLBRIDGE_TEST_DATABASE_URL:-}" ]; then
  echo "== the same suite on PostgreSQL"
  cargo nextest run --workspace "$@"
else
  echo "PostgreSQL run skipped: CALLBRIDGE_TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1/postgres)"
fi
