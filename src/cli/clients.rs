//! `clients new`: a new minting client, and its secret unless it
//! authenticates with a workload-identity JWT.

use std::process::ExitCode;

use super::args::NewClientArgs;
use super::fail;
use crate::clients::ceiling::ScopeCeiling;
use crate::clients::jwt::JwtTrust;
use crate::clients::{NewClient, new_entry};

/// Runs `clients new`: prints `{"secret": …, "client": {…}}` (or, for a JWT
/// client, `{"client": {…}}`) on one line.
pub fn run_new(args: NewClientArgs) -> ExitCode {
    let jwt = args.jwt_issuer.map(|issuer| JwtTrust {
        issuer,
        audiences: args.jwt_audience,
        subjects: args.jwt_subject,
        jwks_uri: args.jwt_jwks_uri,
        jwks_file: args.jwt_jwks_file,
        ca_file: args.jwt_ca_file,
    });
    let scopes = ScopeCeiling {
        can_start_sessions: args.ceiling_can_start_sessions,
        can_manage_mode_registry: args.ceiling_can_manage_mode_registry,
        is_observer: args.ceiling_is_observer,
        allowed_modes: args.ceiling_allowed_modes,
        max_open_sessions: args.ceiling_max_open_sessions,
    };
    let spec = NewClient {
        name: args.name,
        senders: args.senders,
        max_ttl_seconds: args.max_ttl_seconds,
        jwt,
        scopes,
    };
    match new_entry(spec) {
        Ok((Some(secret), entry)) => {
            println!(
                "{}",
                serde_json::json!({ "secret": secret, "client": entry })
            );
            ExitCode::SUCCESS
        }
        Ok((None, entry)) => {
            println!("{}", serde_json::json!({ "client": entry }));
            ExitCode::SUCCESS
        }
        Err(err) => fail(format_args!("clients new: {err}")),
    }
}
