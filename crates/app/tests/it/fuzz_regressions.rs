//! Every input the fuzzer ever found failing (`fuzz/regressions/<target>/`), and the voice
//! platforms' sample payloads, run through the invariants the fuzz targets check
//! (`callbridge::invariants`), so what was fixed stays fixed on the stable toolchain.

use std::path::{Path, PathBuf};

use callbridge::invariants::{TARGETS, check};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_input_the_fuzzer_found_keeps_its_targets_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).expect("fuzz/regressions exists") {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let target = dir.file_name().unwrap().to_str().unwrap().to_string();
        assert!(TARGETS.contains(&target.as_str()), "fuzz/regressions/{target} names no fuzz target");
        for file in files(&dir) {
            check(&target, &std::fs::read(&file).unwrap());
            checked += 1;
        }
    }
    eprintln!("{checked} regression inputs checked");
}

#[test]
fn the_platforms_sample_payloads_keep_the_webhook_invariants() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/voice");
    let mut checked = 0;
    for target in ["vapi", "retell", "elevenlabs"] {
        for file in files(&fixtures.join(target)).into_iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
            check(target, &std::fs::read(&file).unwrap());
            checked += 1;
        }
    }
    assert!(checked >= 3, "the sample payloads are where the suite expects them ({})", fixtures.display());
}

#[test]
#[should_panic(expected = "no fuzz target is called")]
fn a_misnamed_target_cannot_pass_unnoticed() {
    check("vapii", b"{}");
}
