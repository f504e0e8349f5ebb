#!/usr/bin/env bash
# Fuzzes every parser and verifier with libFuzzer (cargo fuzz, nightly toolchain):
#   bash scripts/fuzz.sh [RUNS] [TARGET...]     (default: 1000000 inputs, every target)
# Corpora start from the voice platforms' sample payloads (fixtures/voice) and grow under
# target/fuzz/corpus/. A failing input is saved by libFuzzer under fuzz/artifacts/<target>/;
# copy it to fuzz/regressions/<target>/ so the normal test suite
# (crates/app/tests/it/fuzz_regressions.rs) keeps checking it. Prints a line per target:
# inputs run, and whether it failed.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1000000}"
shift || true
targets=("$@")
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi
fixtures="fixtures/voice"
(cd fuzz && cargo +nightly fuzz build --target-dir ../target/fuzz)
for t in "${targets[@]}"; do
  corpus="target/fuzz/corpus/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  case "$t" in
    vapi|retell|elevenlabs|generic|pulled)
      if [ -d "$fixtures/$t" ]; then find "$fixtures/$t" -name '*.json' -exec cp {} "$corpus/" \; ; fi
      dict=(-dict=fuzz/dict/webhooks.dict)
      if [ "$t" = pulled ]; then
        printf '{"id":7,"started_at":"2026-03-02T15:04:00Z","caller":{"phone":"(571) 830-8515","name":"Dana"},"duration":95,"transcript":[{"speaker":"caller","text":"hi"}],"answers":[{"q":"Address","a":"12 Elm"}]}' >"$corpus/seed-record"
      fi
      if [ "$t" = generic ]; then
        # Zapier's shapes: a form body (a first line starting `form`) and an array of one.
        printf 'form\ncaller_email=a%%40example.com&contact__first_name=Ann&start_time=2026-01-08T09%%3A00%%3A00Z\n' >"$corpus/seed-form"
        printf 'zap-1\n[{"contact__email":"a@example.com","meeting_time":"2026-01-08T09:00:00Z"}]\n' >"$corpus/seed-wrapped"
      fi ;;
    tool_calls)
      for f in vapi/tool-calls.request.constructed.json retell/custom-function.request.constructed.json \
               elevenlabs/server-tool.book_meeting.request-body-constructed.json; do
        [ -f "$fixtures/$f" ] && cp "$fixtures/$f" "$corpus/"
      done
      dict=(-dict=fuzz/dict/webhooks.dict) ;;
    *) dict=() ;;
  esac
  [ -d "fuzz/regressions/$t" ] && cp fuzz/regressions/"$t"/* "$corpus/" 2>/dev/null || true
  log="target/fuzz/$t.log"
  status=ok
  (cd fuzz && cargo +nightly fuzz run --target-dir ../target/fuzz "$t" "../$corpus" -- \
      -runs="$runs" -max_len=65536 -rss_limit_mb=4096 -artifact_prefix="artifacts/$t/" \
      "${dict[@]/#-dict=/-dict=../}") >"$log" 2>&1 || status=FAILED
  done_runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' | tail -1 || true)
  echo "$t: ${done_runs:-?} inputs, $status (log: $log)"
done
