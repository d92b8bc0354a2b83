//! `clients new`: a new minting client and its secret.

use std::process::ExitCode;

use super::fail;
use crate::clients::new_client;

/// Runs `clients new`: prints `{"secret": …, "client": {…}}` on one line.
pub fn run_new(name: &str, senders: Vec<String>, max_ttl_seconds: Option<u64>) -> ExitCode {
    match new_client(name, senders, max_ttl_seconds) {
        Ok((secret, entry)) => {
            println!(
                "{}",
                serde_json::json!({ "secret": secret, "client": entry })
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(format_args!("clients new: {err}")),
    }
}
