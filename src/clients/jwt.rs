//! Workload-identity client authentication: a minting client proves itself
//! with a JWT its platform issued (a Kubernetes projected service-account
//! token, a SPIFFE JWT-SVID, a cloud OIDC token) instead of a static secret.
//!
//! Such tokens rotate by themselves, so nobody has to create, store,
//! distribute or rotate a bearer secret for the orchestrators. A client
//! entry's `"jwt"` names the issuer it trusts, the audiences it accepts and
//! the subjects (glob patterns, like `senders`) that count as this client.
//!
//! Verification is deliberately narrow: RS256 or ES256 only (never `none`
//! or HMAC, whose "key" would be public), the issuer's own keys only (from
//! `jwks_file`, `jwks_uri`, or OIDC discovery), `exp` and `nbf` with 30 s of
//! leeway, at least one listed audience, a matching subject. Every failure
//! has a [`JwtFailure`] reason for the audit record and a debug log, while
//! the caller only learns "invalid token": the reason would help an
//! attacker more than an honest caller. The token itself is never logged.

mod fetch;
mod keys;

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

pub(crate) use keys::{IssuerKeys, KeyRegistry, KeySet};

use super::patterns::{Pattern, glob_match};

/// Leeway on `exp` and `nbf`, for clock skew between the platform and us.
pub(crate) const LEEWAY_SECONDS: u64 = 30;

/// A client entry's `"jwt"`, as operators write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtTrust {
    /// The exact `iss` of the caller's tokens.
    pub(crate) issuer: String,
    /// Accepted `aud` values; a token needs at least one of them.
    pub(crate) audiences: Vec<String>,
    /// Patterns of accepted `sub` values, in the `senders` language (`*`
    /// within a `/`-segment, `**` across).
    pub(crate) subjects: Vec<String>,
    /// Where the issuer publishes its JWKS; found by discovery when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) jwks_uri: Option<String>,
    /// A file holding the issuer's JWKS, re-read with the client list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) jwks_file: Option<PathBuf>,
    /// PEM certificates trusted for https fetches instead of the system's
    /// (a cluster CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca_file: Option<PathBuf>,
}

impl JwtTrust {
    /// Checks the entry; the problem is worded for the client-list error.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.issuer.trim().is_empty() {
            return Err("\"jwt.issuer\" must be a non-empty string");
        }
        if self.audiences.is_empty() || self.audiences.iter().any(|a| a.is_empty()) {
            return Err("\"jwt.audiences\" must list at least one non-empty audience");
        }
        if self.subjects.is_empty() || self.subjects.iter().any(|s| s.is_empty()) {
            return Err("\"jwt.subjects\" must list at least one non-empty pattern");
        }
        if self.subjects.iter().any(|s| Pattern::parse(s).is_err()) {
            return Err(
                "\"jwt.subjects\" patterns must not contain control characters, line or paragraph separators, bidirectional formatting characters, or \".\" or \"..\" segments",
            );
        }
        match (&self.jwks_uri, &self.jwks_file) {
            (Some(_), Some(_)) => Err("\"jwt\" may name \"jwks_uri\" or \"jwks_file\", not both"),
            (Some(uri), None) => fetch::check_fetch_url(uri).map(drop).map_err(|_| {
                "\"jwt.jwks_uri\" must be an https URL (http only to a loopback address)"
            }),
            (None, Some(_)) => Ok(()),
            (None, None) => fetch::check_fetch_url(&self.issuer).map(drop).map_err(|_| {
                "\"jwt.issuer\" must be an https URL (http only to a loopback address) for discovery, or name \"jwks_uri\" or \"jwks_file\""
            }),
        }
    }

    /// Whether a token's audiences and subject are this client's.
    fn accepts(&self, claims: &CallerClaims) -> (bool, bool) {
        let audience = claims
            .aud
            .iter()
            .any(|aud| self.audiences.iter().any(|ok| ok == aud));
        let subject = self
            .subjects
            .iter()
            .any(|pattern| glob_match(pattern, &claims.sub));
        (audience, subject)
    }
}

/// Why a caller's JWT was refused. Reasons go to the audit record and a
/// debug log, never to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFailure {
    /// Not a compact JWS with a JSON header and payload.
    Malformed,
    /// `alg` is not RS256 or ES256 (`none`, HMAC, anything else).
    AlgorithmNotAllowed,
    /// `iss` is missing or names no configured issuer.
    UnknownIssuer,
    /// No key of the issuer has the token's `kid`, even after a refetch.
    UnknownKey,
    /// The signature does not verify with the issuer's key(s).
    BadSignature,
    /// The payload's claims have the wrong types.
    MalformedClaims,
    /// No `exp`.
    MissingExpiry,
    /// No `sub`.
    MissingSubject,
    /// `exp` passed more than the leeway ago.
    Expired,
    /// `nbf` is more than the leeway ahead.
    NotYetValid,
    /// No `aud` value is accepted by a client trusting this issuer.
    AudienceNotAllowed,
    /// The `sub` matches no subject pattern of those clients.
    SubjectNotAllowed,
    /// The issuer's keys have never been fetched (or expired past their
    /// grace) and the issuer is unreachable: the caller should retry.
    KeysUnavailable {
        /// Seconds until the next fetch attempt.
        retry_after: u64,
    },
}

impl JwtFailure {
    /// The reason's name in audit records, logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JwtFailure::Malformed => "malformed_token",
            JwtFailure::AlgorithmNotAllowed => "algorithm_not_allowed",
            JwtFailure::UnknownIssuer => "unknown_issuer",
            JwtFailure::UnknownKey => "unknown_kid",
            JwtFailure::BadSignature => "bad_signature",
            JwtFailure::MalformedClaims => "malformed_claims",
            JwtFailure::MissingExpiry => "missing_exp",
            JwtFailure::MissingSubject => "missing_sub",
            JwtFailure::Expired => "expired",
            JwtFailure::NotYetValid => "not_yet_valid",
            JwtFailure::AudienceNotAllowed => "audience_not_allowed",
            JwtFailure::SubjectNotAllowed => "subject_not_allowed",
            JwtFailure::KeysUnavailable { .. } => "issuer_keys_unavailable",
        }
    }
}

/// Where a JWT client's issuer keys come from.
#[derive(Debug, Clone)]
pub(crate) enum KeyHandle {
    /// Loaded from `jwks_file` with the client list.
    Static(Arc<KeySet>),
    /// Fetched over HTTP(S) and cached; shared across reloads.
    Remote(Arc<IssuerKeys>),
}

/// A workload-identity client: its trust entry and its issuer's keys.
#[derive(Debug, Clone)]
pub(crate) struct JwtClient {
    /// The entry.
    pub(crate) trust: JwtTrust,
    /// Its issuer's keys.
    pub(crate) keys: KeyHandle,
}

impl JwtClient {
    /// Builds the client: reads `jwks_file`, or takes the shared cache for
    /// the remote source from `registry`.
    pub(crate) fn new(trust: JwtTrust, registry: &KeyRegistry) -> Result<Self, String> {
        let keys = match &trust.jwks_file {
            Some(path) => KeyHandle::Static(Arc::new(keys::read_jwks_file(path)?)),
            None => KeyHandle::Remote(registry.remote(&trust)?),
        };
        Ok(JwtClient { trust, keys })
    }

    /// Whether two clients would need different keys for the same issuer.
    pub(crate) fn same_key_source(&self, other: &JwtClient) -> bool {
        self.trust.jwks_uri == other.trust.jwks_uri
            && self.trust.jwks_file == other.trust.jwks_file
            && self.trust.ca_file == other.trust.ca_file
    }
}

/// The verified facts about a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// Its `sub`.
    pub(crate) subject: String,
}

/// The claims we read from a caller's token, after its signature verified.
#[derive(Debug, Deserialize)]
struct CallerClaims {
    #[serde(default)]
    sub: String,
    #[serde(default, deserialize_with = "one_or_many")]
    aud: Vec<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(de)? {
        None => Vec::new(),
        Some(OneOrMany::One(aud)) => vec![aud],
        Some(OneOrMany::Many(auds)) => auds,
    })
}

/// The unverified parts of a token needed to pick its issuer and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unverified {
    /// `iss` from the payload.
    pub(crate) issuer: String,
    /// `alg` from the header, RS256 or ES256.
    pub(crate) alg: Algorithm,
    /// `kid` from the header.
    pub(crate) kid: Option<String>,
}

/// Reads the header and issuer of a compact JWS without trusting them.
/// `alg` is checked here, by its text, so `none` and `HS256` get their own
/// reason rather than a parse error.
pub(crate) fn peek(token: &str) -> Result<Unverified, JwtFailure> {
    #[derive(Deserialize)]
    struct Header {
        alg: String,
        kid: Option<String>,
    }
    #[derive(Deserialize)]
    struct Payload {
        iss: Option<String>,
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtFailure::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| JwtFailure::Malformed)
    };
    let header: Header =
        serde_json::from_slice(&decode(header)?).map_err(|_| JwtFailure::Malformed)?;
    let alg = match header.alg.as_str() {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        _ => return Err(JwtFailure::AlgorithmNotAllowed),
    };
    let payload: Payload =
        serde_json::from_slice(&decode(payload)?).map_err(|_| JwtFailure::Malformed)?;
    Ok(Unverified {
        issuer: payload.iss.ok_or(JwtFailure::UnknownIssuer)?,
        alg,
        kid: header.kid,
    })
}

/// Verifies `token` against `keys` and picks the first of `candidates`
/// (clients trusting its issuer, in list order) that accepts its audience
/// and subject. `now` is Unix seconds.
pub(crate) fn verify<'a, T>(
    token: &str,
    unverified: &Unverified,
    keys: &KeySet,
    candidates: &[(&'a T, &'a JwtTrust)],
    now: u64,
) -> Result<(&'a T, Caller), JwtFailure> {
    let claims = verify_signature(token, unverified, keys)?;
    let exp = claims.exp.ok_or(JwtFailure::MissingExpiry)?;
    if now > exp.saturating_add(LEEWAY_SECONDS) {
        return Err(JwtFailure::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECONDS))
    {
        return Err(JwtFailure::NotYetValid);
    }
    if claims.sub.is_empty() {
        return Err(JwtFailure::MissingSubject);
    }
    let mut audience_seen = false;
    for (client, trust) in candidates {
        match trust.accepts(&claims) {
            (true, true) => {
                return Ok((
                    client,
                    Caller {
                        subject: claims.sub,
                    },
                ));
            }
            (audience, _) => audience_seen |= audience,
        }
    }
    Err(if audience_seen {
        JwtFailure::SubjectNotAllowed
    } else {
        JwtFailure::AudienceNotAllowed
    })
}

/// The signature check, by jsonwebtoken with the AWS-LC backend. The key is
/// the one named by `kid`; a token without one is tried against every key
/// of its algorithm. jsonwebtoken checks only the signature and algorithm
/// here: the time and audience rules are ours, on the service's clock.
fn verify_signature(
    token: &str,
    unverified: &Unverified,
    keys: &KeySet,
) -> Result<CallerClaims, JwtFailure> {
    let mut validation = Validation::new(unverified.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let candidates = keys.candidates(unverified.kid.as_deref(), unverified.alg);
    if candidates.is_empty() {
        return Err(match unverified.kid {
            Some(_) => JwtFailure::UnknownKey,
            None => JwtFailure::BadSignature,
        });
    }
    let mut failure = JwtFailure::BadSignature;
    for key in candidates {
        match jsonwebtoken::decode::<CallerClaims>(token, key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(err) => {
                use jsonwebtoken::errors::ErrorKind;
                failure = match err.kind() {
                    ErrorKind::Json(_) => JwtFailure::MalformedClaims,
                    ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
                        JwtFailure::Malformed
                    }
                    _ => JwtFailure::BadSignature,
                };
            }
        }
    }
    Err(failure)
}

#[cfg(test)]
mod tests;
