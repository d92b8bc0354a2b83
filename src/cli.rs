//! The operator commands, one file per command group, in the library so
//! tests call them directly. `main.rs` only parses the command line
//! ([`args`]) and calls the matching `run` here.
//!
//! Every failure ends as one line on standard error,
//! `macp-auth-service: <what went wrong and what to do>`, and exit status 1.

pub mod args;
pub mod check_config;
pub mod clients;
mod files;
pub mod healthcheck;
pub mod keygen;
pub mod keys;
pub mod serve;
#[cfg(test)]
mod tests;

use std::process::ExitCode;

use crate::clients::LoadClientsError;
use crate::keys::KeyError;
use crate::keys::ring::RingError;
use crate::keys::store::LoadKeyError;

/// Why an operator command failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// A key is unusable.
    #[error("the key {0}")]
    Key(#[from] KeyError),
    /// A ring is unusable.
    #[error("the ring {0}")]
    Ring(#[from] RingError),
    /// The configured key source is unusable.
    #[error("invalid configuration: {0}")]
    Load(#[from] LoadKeyError),
    /// The configured client list is unusable.
    #[error("invalid configuration: {0}")]
    Clients(#[from] LoadClientsError),
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The arguments do not make sense together.
    #[error("{0}")]
    Usage(String),
}

/// Prints `message` as the one failure line and returns exit status 1.
pub(crate) fn fail(message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("macp-auth-service: {message}");
    ExitCode::FAILURE
}
