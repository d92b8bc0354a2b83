//! The fuzz corpus as a regression suite. Every input under
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` is replayed
//! through the very checks the fuzz targets run (`fuzz/src/invariants.rs`,
//! included below), so plain `cargo test` guards what fuzzing found without
//! cargo-fuzz or a nightly compiler. See `fuzz/README.md`.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/invariants.rs"]
mod invariants;

/// The corpus and regression inputs of one fuzz target, in a stable order.
fn inputs(target: &str) -> (usize, Vec<PathBuf>) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut corpus = 0;
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .map(|entry| entry.expect("readable fuzz directory").path())
            .filter(|path| path.is_file())
            .collect();
        found.sort();
        if kind == "corpus" {
            corpus = found.len();
        }
        files.extend(found);
    }
    (corpus, files)
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

/// Runs `check` on every input of `target`, and fails naming each input that
/// breaks an invariant (all of them, not just the first).
fn replay(target: &str, check: fn(&[u8])) {
    let (corpus, files) = inputs(target);
    assert!(
        corpus > 0,
        "fuzz/corpus/{target}/ is missing or empty, so nothing would be replayed"
    );
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("readable fuzz input");
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            failures.push(format!("{}: {}", file.display(), panic_message(&*payload)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} inputs break an invariant:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn every_saved_key_parser_input_keeps_the_ring_and_secrecy_invariants() {
    replay("key_parser", invariants::check_key_parser);
}

#[test]
fn every_saved_mint_request_body_gets_the_contract_answer() {
    replay("mint_request", invariants::check_mint_request);
}

#[test]
fn every_saved_scopes_input_normalises_stably_and_round_trips() {
    replay("scopes", invariants::check_scopes);
}
