//! `tool_calls`: the invariants of `callbridge::invariants` on generated inputs.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| callbridge::invariants::check("tool_calls", data));
