//! `keygen`: a new private JWK, or the public JWK of one.

use std::io::Read;
use std::process::ExitCode;
use std::time::SystemTime;

use serde_json::Value;

use super::args::KeygenArgs;
use super::{CommandError, fail};
use crate::keys::ring::ACTIVATE_AT;
use crate::keys::{
    KeyError, SigningAlg, default_kid, generate_private_jwk, public_jwk_from_private,
};

/// RSA modulus size `keygen` uses when `--bits` is not given.
pub(crate) const DEFAULT_RSA_BITS: usize = 2048;

/// A fresh private JWK as one line of JSON, ready for
/// `MACP_AUTH_SIGNING_KEY_JSON` or a ring file. `activate_at` (Unix seconds
/// or RFC 3339) schedules when it starts signing.
pub(crate) fn keygen(
    alg: SigningAlg,
    kid: Option<&str>,
    rsa_bits: usize,
    activate_at: Option<&str>,
) -> Result<String, CommandError> {
    let kid = match kid {
        Some(kid) => kid.to_owned(),
        None => default_kid(alg, SystemTime::now())?,
    };
    let mut jwk = generate_private_jwk(alg, rsa_bits, Some(&kid))?;
    if let Some(at) = activate_at {
        let seconds = crate::clock::parse_instant(at).ok_or_else(|| {
            CommandError::Usage(format!(
                "--activate-at must be Unix seconds or an RFC 3339 timestamp (got {at:?})"
            ))
        })?;
        jwk.insert(ACTIVATE_AT.into(), seconds.into());
    }
    Ok(Value::Object(jwk).to_string())
}

/// The public JWK of the private JWK in `private_jwk`, as one line of JSON.
pub(crate) fn public_jwk(private_jwk: &str) -> Result<String, KeyError> {
    Ok(Value::Object(public_jwk_from_private(private_jwk.trim())?).to_string())
}

/// Runs `keygen` (or `keygen --public`).
pub fn run(args: KeygenArgs) -> ExitCode {
    let printed = if args.public {
        let mut private = String::new();
        if let Err(err) = std::io::stdin().read_to_string(&mut private) {
            return fail(format_args!(
                "cannot read a private JWK from standard input: {err}"
            ));
        }
        public_jwk(&private).map_err(|err| format!("the JWK on standard input {err}"))
    } else {
        let alg = SigningAlg::from(args.alg);
        if args.bits.is_some() && alg != SigningAlg::Rs256 {
            return fail(format_args!("--bits applies to RS256 keys only"));
        }
        let bits = args.bits.map_or(DEFAULT_RSA_BITS, |bits| {
            bits.parse().expect("clap allows only the listed sizes")
        });
        keygen(alg, args.kid.as_deref(), bits, args.activate_at.as_deref())
            .map_err(|err| format!("key generation failed: {err}"))
    };
    match printed {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(format_args!("{message}")),
    }
}
