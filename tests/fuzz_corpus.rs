//! The fuzz targets' inputs, in `cargo test`: every file of `fuzz/corpus/<target>/` (what
//! coverage-guided fuzzing kept) and `fuzz/regressions/<target>/` (every input that once made
//! a target fail, minimized) goes through the same checks as the fuzzer's (`tests/fuzz/props.rs`).
//! The fuzzing itself (cargo-fuzz on the stable toolchain): docs/fuzzing.md.

#[path = "fuzz/props.rs"]
mod props;

use std::path::Path;

fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Parsing recurses once per level of nesting (up to 128): the checks run on a stack of the
/// size starmap gives its own threads (8 MiB, `cli::THREAD_STACK`), not the test harness's 2 MiB.
#[test]
fn every_corpus_and_regression_input_passes_its_targets_checks() {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(check_every_input)
        .unwrap()
        .join()
        .unwrap();
}

fn check_every_input() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (target, check) in props::TARGETS {
        let corpus = inputs(&root.join("corpus").join(target));
        let regressions = inputs(&root.join("regressions").join(target));
        assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ is empty");
        for file in corpus.iter().chain(&regressions) {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} fails its check (see the panic above)",
                file.display()
            );
        }
        eprintln!(
            "{target}: {} corpus inputs, {} regressions",
            corpus.len(),
            regressions.len()
        );
        total += corpus.len() + regressions.len();
    }
    eprintln!("{total} inputs in all");
}
