//! Log output: `tracing` events formatted for humans on standard output.
//!
//! The filter comes from `RUST_LOG` (validated by the config module, default
//! `info`). Nothing logged anywhere in the service carries a token or key
//! material; the mint log names the sender, TTL, kid and jti only.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber with `filter`. A second call, as happens
/// when tests start several services in one process, leaves the first in place.
pub fn init(filter: &str) {
    // The config module has already refused filters that do not parse, so
    // the fallback is unreachable from the binary.
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes only help a person at a terminal; in a container log
        // pipeline they are noise that breaks grep and log parsers.
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();
}
