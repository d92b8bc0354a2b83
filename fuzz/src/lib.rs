//! Support for the macp-auth-service fuzz targets: the invariant checks, kept
//! in one file that `tests/integration/fuzz_regressions.rs` also includes so
//! the committed corpus replays through exactly the same checks.

pub mod invariants;
