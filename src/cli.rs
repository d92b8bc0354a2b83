//! The operator commands, one file per command group, in the library so
//! tests call them directly. `main.rs` only parses and dispatches.

pub mod commands;
pub mod healthcheck;
