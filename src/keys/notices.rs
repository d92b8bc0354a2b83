//! Transition notices: what changed in the ring, as values.
//!
//! The store works out which notices a refresh or a reload gives rise to
//! (a key activated, superseded, retired; a key published too shortly before
//! it signs; a key removed while still published) with the pure functions
//! here, logs them, and returns them. Tests assert on the values; the
//! wording operators read lives in one place, [`Notice`]'s `Display`.

use std::collections::HashMap;
use std::fmt;

use crate::keys::SigningKey;
use crate::keys::ring::KeyRing;
use crate::keys::snapshot::Snapshot;

/// One change to the ring worth telling the operator about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `kid` signs new tokens from `at` on.
    Activated {
        /// The key now signing.
        kid: String,
        /// When, in Unix seconds.
        at: u64,
    },
    /// `kid` stopped signing because `by` activated; it stays published.
    Superseded {
        /// The key that stopped signing.
        kid: String,
        /// The key signing instead.
        by: String,
        /// When, in Unix seconds.
        at: u64,
    },
    /// `kid` left the JWKS on schedule: no token it signed is still valid.
    Retired {
        /// The key removed from the JWKS.
        kid: String,
        /// When, in Unix seconds.
        at: u64,
    },
    /// `kid` activates less than the pre-publication window after this
    /// process first published it.
    ShortPrepublication {
        /// The key.
        kid: String,
        /// Its activation, in Unix seconds.
        activate_at: u64,
        /// Seconds between its first publication here and its activation.
        published_for: u64,
        /// The configured pre-publication window, in seconds.
        window: u64,
    },
    /// A reload made a key sign at once that was never published before.
    EmergencyRotation {
        /// The key.
        kid: String,
    },
    /// A reload removed a key that was still published.
    RemovedWhilePublished {
        /// The key.
        kid: String,
    },
}

impl Notice {
    /// The key the notice is about.
    pub(crate) fn kid(&self) -> &str {
        match self {
            Notice::Activated { kid, .. }
            | Notice::Superseded { kid, .. }
            | Notice::Retired { kid, .. }
            | Notice::ShortPrepublication { kid, .. }
            | Notice::EmergencyRotation { kid }
            | Notice::RemovedWhilePublished { kid } => kid,
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::Activated { kid, .. } => {
                write!(f, "key {kid} activated: it signs new tokens from now on")
            }
            Notice::Superseded { kid, by, .. } => write!(
                f,
                "key {kid} superseded by {by}: it stays published until every token it signed has expired"
            ),
            Notice::Retired { kid, .. } => write!(
                f,
                "key {kid} retired: no token it signed can still be valid; removed from the JWKS"
            ),
            Notice::ShortPrepublication {
                kid,
                published_for,
                window,
                ..
            } => write!(
                f,
                "key {kid} activates {published_for} s after it was first published here, less than the pre-publication window of {window} s: verifiers whose JWKS cache predates its publication will reject its tokens until they refresh"
            ),
            Notice::EmergencyRotation { kid } => write!(
                f,
                "emergency rotation: key {kid} signs from now on without having been published in advance; verifiers with a cached JWKS will reject new tokens until they refresh (the MACP runtime refreshes every MACP_AUTH_JWKS_TTL_SECS, 300 s by default)"
            ),
            Notice::RemovedWhilePublished { kid } => write!(
                f,
                "key {kid} was removed from the ring while still published: tokens it signed stop verifying once verifiers refresh their JWKS"
            ),
        }
    }
}

/// What changed between two snapshots of `ring` at `now`. A key that left
/// the ring itself (by reload) is reported by the reload, not here: it was
/// neither superseded nor retired on schedule.
pub(crate) fn transitions(
    ring: &KeyRing,
    previous: &Snapshot,
    next: &Snapshot,
    now: u64,
) -> Vec<Notice> {
    let in_ring = |kid: &str| ring.keys().iter().any(|entry| entry.key.kid() == kid);
    let mut notices = Vec::new();
    if previous.signing.kid() != next.signing.kid() {
        notices.push(Notice::Activated {
            kid: next.signing.kid().to_owned(),
            at: now,
        });
        if in_ring(previous.signing.kid()) {
            notices.push(Notice::Superseded {
                kid: previous.signing.kid().to_owned(),
                by: next.signing.kid().to_owned(),
                at: now,
            });
        }
    }
    for kid in &previous.published_kids {
        if !next.published_kids.contains(kid) && in_ring(kid) {
            notices.push(Notice::Retired {
                kid: kid.clone(),
                at: now,
            });
        }
    }
    notices
}

/// The pre-publication notices for `ring` at `now`, recording each key's
/// first sighting in `first_seen` (by identity, so a renamed key keeps its
/// history). `previous` is the ring a reload replaces, `None` at startup.
pub(crate) fn arrivals(
    ring: &KeyRing,
    previous: Option<&KeyRing>,
    first_seen: &mut HashMap<String, u64>,
    now: u64,
    max_ttl: u64,
    window: u64,
) -> Vec<Notice> {
    let signing = ring.schedule(now, max_ttl).signing;
    let mut notices = Vec::new();
    for (index, entry) in ring.keys().iter().enumerate() {
        let seen = *first_seen
            .entry(thumbprint_identity(&entry.key))
            .or_insert(now);
        let activation = entry.activate_at.unwrap_or(0);
        let kid = entry.key.kid().to_owned();
        if activation > now && activation < seen.saturating_add(window) {
            notices.push(Notice::ShortPrepublication {
                kid,
                activate_at: activation,
                published_for: activation - seen,
                window,
            });
        } else if previous.is_some_and(|previous| !contains(previous, &entry.key))
            && signing == Some(index)
        {
            notices.push(Notice::EmergencyRotation { kid });
        }
    }
    notices
}

/// What a reload that replaces `previous` with `ring` at `now` does to the
/// published keys: the keys it removed while they were still published.
pub(crate) fn removals(ring: &KeyRing, previous: &KeyRing, now: u64, max_ttl: u64) -> Vec<Notice> {
    previous
        .schedule(now, max_ttl)
        .published
        .into_iter()
        .map(|index| &previous.keys()[index].key)
        .filter(|old| !contains(ring, old))
        .map(|old| Notice::RemovedWhilePublished {
            kid: old.kid().to_owned(),
        })
        .collect()
}

/// Whether `ring` holds `key`, whatever kid it goes by there.
pub(crate) fn contains(ring: &KeyRing, key: &SigningKey) -> bool {
    let identity = thumbprint_identity(key);
    ring.keys()
        .iter()
        .any(|entry| thumbprint_identity(&entry.key) == identity)
}

/// A key's identity independent of its kid: the thumbprint input members.
pub(crate) fn thumbprint_identity(key: &SigningKey) -> String {
    let jwk = key.public_jwk();
    ["n", "e", "x", "y"]
        .iter()
        .filter_map(|member| jwk.get(*member).and_then(|v| v.as_str()))
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_notice_renders_as_the_log_line_operators_know() {
        let cases = [
            (
                Notice::Activated {
                    kid: "new".into(),
                    at: 2_000,
                },
                "key new activated: it signs new tokens from now on",
            ),
            (
                Notice::Superseded {
                    kid: "old".into(),
                    by: "new".into(),
                    at: 2_000,
                },
                "key old superseded by new: it stays published until every token it signed has expired",
            ),
            (
                Notice::Retired {
                    kid: "old".into(),
                    at: 5_660,
                },
                "key old retired: no token it signed can still be valid; removed from the JWKS",
            ),
            (
                Notice::ShortPrepublication {
                    kid: "soon".into(),
                    activate_at: 10_300,
                    published_for: 300,
                    window: 600,
                },
                "key soon activates 300 s after it was first published here, less than the pre-publication window of 600 s: verifiers whose JWKS cache predates its publication will reject its tokens until they refresh",
            ),
            (
                Notice::EmergencyRotation {
                    kid: "replacement".into(),
                },
                "emergency rotation: key replacement signs from now on without having been published in advance; verifiers with a cached JWKS will reject new tokens until they refresh (the MACP runtime refreshes every MACP_AUTH_JWKS_TTL_SECS, 300 s by default)",
            ),
            (
                Notice::RemovedWhilePublished { kid: "old".into() },
                "key old was removed from the ring while still published: tokens it signed stop verifying once verifiers refresh their JWKS",
            ),
        ];
        for (notice, line) in cases {
            assert_eq!(notice.to_string(), line);
            assert!(line.contains(notice.kid()), "{line}");
        }
    }
}
