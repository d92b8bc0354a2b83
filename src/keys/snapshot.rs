//! What requests read from the ring at one instant, computed once per
//! scheduled change instead of once per request.
//!
//! A snapshot carries the signing key, the JWKS bytes exactly as served and
//! their strong ETag, so `GET /.well-known/jwks.json` and `POST /tokens` do
//! one atomic load and no serialisation or hashing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderValue;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::keys::ring::KeyRing;
use crate::keys::{SigningKey, jwks_json};

/// Everything a request needs from the ring at one instant.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The key that signs new tokens.
    pub(crate) signing: Arc<SigningKey>,
    /// The JWKS document, as served.
    pub(crate) jwks: Bytes,
    /// Strong ETag of [`Snapshot::jwks`].
    pub(crate) etag: HeaderValue,
    /// When the published set next changes, if scheduled.
    pub(crate) next_published_change: Option<u64>,
    /// The kids in the JWKS, in order.
    pub(crate) published_kids: Vec<String>,
    /// The first instant this snapshot no longer describes the ring.
    pub(crate) valid_until: u64,
}

impl Snapshot {
    /// The snapshot of `ring` at `now`; `None` when no key has activated.
    pub(crate) fn of(ring: &KeyRing, now: u64, max_ttl: u64) -> Option<Snapshot> {
        let schedule = ring.schedule(now, max_ttl);
        let signing = ring.keys()[schedule.signing?].key.clone();
        let published: Vec<&SigningKey> = schedule
            .published
            .iter()
            .map(|index| ring.keys()[*index].key.as_ref())
            .collect();
        let jwks = Bytes::from(jwks_json(published.iter().copied()));
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &jwks);
        let etag = HeaderValue::from_str(&format!(
            "\"{}\"",
            URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
        ))
        .expect("base64url is a valid header value");
        Some(Snapshot {
            signing,
            jwks,
            etag,
            next_published_change: schedule.next_retirement,
            published_kids: published.iter().map(|key| key.kid().to_owned()).collect(),
            valid_until: schedule.next_change().unwrap_or(u64::MAX),
        })
    }

    /// How long a cache may keep this JWKS: never past a scheduled change of
    /// the published set, and never longer than `max_age`.
    pub(crate) fn max_age(&self, now: u64, max_age: u64) -> u64 {
        self.next_published_change
            .map_or(max_age, |change| change.saturating_sub(now).min(max_age))
    }
}
