//! Reading a ring from its source text: one private JWK, a JWK Set, or one
//! or more PEM blocks, each key parsed and probed, then the checks that
//! concern the set as a whole (unique kids).
//!
//! Kept apart from the schedule in [`super`]: parsing is where hostile input
//! arrives (it is what the `key_parser` fuzz target drives), while the
//! schedule is pure arithmetic over keys that are already valid.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::clock::parse_instant;
use crate::keys::SigningAlg;
use crate::keys::backend::named_backend;
use crate::keys::{Backends, KeyError, KeySource, SigningKey};

use super::{ACTIVATE_AT, KeyRing, LONE_JWK_KID, RingError, RingKey};

impl KeyRing {
    /// Parses a key source: one private JWK, a JWK Set, or one or more PEM
    /// private keys. Every key must suit `alg`. Members naming a key in an
    /// external store are refused; see [`KeyRing::parse_with`].
    pub fn parse(alg: SigningAlg, text: &str, source: KeySource) -> Result<Self, RingError> {
        Self::parse_with(alg, text, source, None)
    }

    /// [`KeyRing::parse`], where JSON members may also name a key in an
    /// external store (`pkcs11`, `aws_kms`), opened through `backends`:
    /// each is reached, its public key read and a probe signed, in order.
    pub(crate) fn parse_with(
        alg: SigningAlg,
        text: &str,
        source: KeySource,
        backends: Option<&Backends>,
    ) -> Result<Self, RingError> {
        let trimmed = text.trim_start();
        let mut kid_defaulted = false;
        let keys = if trimmed.starts_with('{') {
            let value: Value = serde_json::from_str(text).map_err(|err| {
                RingError::Invalid(KeyError::InvalidJson {
                    line: err.line(),
                    column: err.column(),
                })
            })?;
            let Value::Object(object) = value else {
                unreachable!("text starting with '{{' that parses is an object");
            };
            match object.get("keys") {
                Some(Value::Array(members)) => {
                    let mut keys = Vec::with_capacity(members.len());
                    for (index, member) in members.iter().enumerate() {
                        keys.push(ring_key_from_jwk(alg, index + 1, member, source, backends)?);
                    }
                    keys
                }
                Some(_) => return Err(RingError::KeysNotArray),
                None => {
                    let mut object = object;
                    // The reference's `key-1` is for pinned private JWKs; a
                    // key in a store defaults to its thumbprint, as issue 10
                    // specifies.
                    if matches!(named_backend(&object), Ok(None)) {
                        kid_defaulted = default_lone_kid(&mut object);
                    }
                    vec![
                        ring_key_from_jwk(alg, 1, &Value::Object(object), source, backends)
                            .map_err(|err| match err {
                                // A store's failure keeps the kid it concerns.
                                RingError::Key { source, kid, .. }
                                    if kid.is_empty()
                                        || !matches!(source, KeyError::Backend { .. }) =>
                                {
                                    RingError::Invalid(source)
                                }
                                other => other,
                            })?,
                    ]
                }
            }
        } else if trimmed.starts_with("-----BEGIN") {
            pem_ring_keys(alg, trimmed, source)?
        } else if trimmed.starts_with('[') {
            return Err(RingError::Invalid(KeyError::NotAnObject));
        } else {
            return Err(RingError::UnknownFormat);
        };
        if keys.is_empty() {
            return Err(RingError::Empty);
        }
        let ring = KeyRing {
            keys,
            kid_defaulted,
        };
        for (index, key) in ring.keys.iter().enumerate() {
            if ring.keys[..index]
                .iter()
                .any(|earlier| earlier.key.kid() == key.key.kid())
            {
                return Err(RingError::DuplicateKid(key.key.kid().to_owned()));
            }
        }
        Ok(ring)
    }
}

/// Gives a lone JWK without `kid` the reference's [`LONE_JWK_KID`]; returns
/// whether it did.
fn default_lone_kid(jwk: &mut Map<String, Value>) -> bool {
    if jwk.contains_key("kid") {
        return false;
    }
    jwk.insert("kid".into(), LONE_JWK_KID.into());
    true
}

fn ring_key_from_jwk(
    alg: SigningAlg,
    position: usize,
    member: &Value,
    source: KeySource,
    backends: Option<&Backends>,
) -> Result<RingKey, RingError> {
    let kid = match member.get("kid").and_then(Value::as_str) {
        Some(kid) => format!(" (kid {kid:?})"),
        None => String::new(),
    };
    let Value::Object(jwk) = member else {
        return Err(RingError::Key {
            position,
            kid,
            source: KeyError::NotAnObject,
        });
    };
    let activate_at = match jwk.get(ACTIVATE_AT) {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => Some(number.as_u64().ok_or(RingError::BadActivation {
            position,
            kid: kid.clone(),
        })?),
        Some(Value::String(text)) => Some(parse_instant(text).ok_or(RingError::BadActivation {
            position,
            kid: kid.clone(),
        })?),
        Some(_) => {
            return Err(RingError::BadActivation {
                position,
                kid: kid.clone(),
            });
        }
    };
    let key = match backends {
        Some(backends) => SigningKey::from_member(alg, jwk, source, backends),
        None => SigningKey::from_jwk(alg, jwk, source),
    };
    let key = key.map_err(|source| RingError::Key {
        position,
        kid: kid.clone(),
        source,
    })?;
    Ok(RingKey {
        key: Arc::new(key),
        activate_at,
        stopped_signing: None,
    })
}

/// Splits text into its PEM blocks (BEGIN line through END line).
fn split_pem(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN") {
        let after_begin = &rest[start..];
        let Some(end_marker) = after_begin.find("-----END") else {
            blocks.push(after_begin);
            break;
        };
        let after_end = &after_begin[end_marker..];
        // The END line runs to its closing dashes.
        let close = after_end[8..]
            .find("-----")
            .map_or(after_end.len(), |i| 8 + i + 5);
        blocks.push(&after_begin[..end_marker + close]);
        rest = &after_end[close..];
    }
    blocks
}

/// Reads a ring file's JSON as an editable JWK Set (a single JWK becomes a
/// set of one, keeping the kid it is served with); for the `keys add` and
/// `keys prune` commands.
pub(crate) fn ring_document(text: &str) -> Result<Vec<Map<String, Value>>, RingError> {
    let value: Value = serde_json::from_str(text).map_err(|err| RingError::Key {
        position: 1,
        kid: String::new(),
        source: KeyError::InvalidJson {
            line: err.line(),
            column: err.column(),
        },
    })?;
    match value {
        Value::Object(mut object) => match object.remove("keys") {
            Some(Value::Array(members)) => members
                .into_iter()
                .enumerate()
                .map(|(index, member)| match member {
                    Value::Object(jwk) => Ok(jwk),
                    _ => Err(RingError::Key {
                        position: index + 1,
                        kid: String::new(),
                        source: KeyError::NotAnObject,
                    }),
                })
                .collect(),
            Some(_) => Err(RingError::KeysNotArray),
            None => {
                // As a set member it would lose the lone key's kid.
                default_lone_kid(&mut object);
                Ok(vec![object])
            }
        },
        _ => Err(RingError::UnknownFormat),
    }
}

/// The keys of one or more PEM blocks; PEM carries no activation time.
fn pem_ring_keys(
    alg: SigningAlg,
    text: &str,
    source: KeySource,
) -> Result<Vec<RingKey>, RingError> {
    let blocks = split_pem(text);
    let single = blocks.len() == 1;
    blocks
        .into_iter()
        .enumerate()
        .map(|(index, block)| {
            SigningKey::from_pem(alg, block, source)
                .map(|key| RingKey {
                    key: Arc::new(key),
                    activate_at: None,
                    stopped_signing: None,
                })
                .map_err(|source| {
                    if single {
                        RingError::Invalid(source)
                    } else {
                        RingError::Key {
                            position: index + 1,
                            kid: String::new(),
                            source,
                        }
                    }
                })
        })
        .collect()
}
