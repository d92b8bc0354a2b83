//! The state every request handler shares: settings, the signing key, its
//! pre-serialised JWKS and the signing pool.
//!
//! Built once at startup and cloned cheaply (one `Arc`) into each handler via
//! axum's `State`; nothing here is global, so tests can run many independent
//! instances in one process.

use std::sync::Arc;

use axum::body::Bytes;

use crate::config::Config;
use crate::keys::{SigningKey, jwks_json};
use crate::signer::SigningPool;

/// Shared, immutable per-process state.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    key: Arc<SigningKey>,
    jwks: Bytes,
    signer: SigningPool,
}

impl AppState {
    /// State with a signing pool sized to this machine.
    pub fn new(config: Config, key: SigningKey) -> std::io::Result<Self> {
        Ok(Self::with_pool(
            config,
            key,
            SigningPool::for_this_machine()?,
        ))
    }

    /// State with the given signing pool.
    pub fn with_pool(config: Config, key: SigningKey, signer: SigningPool) -> Self {
        // The JWKS never changes while this state lives: serialise it once.
        let jwks = Bytes::from(jwks_json([&key]));
        AppState {
            inner: Arc::new(Inner {
                config,
                key: Arc::new(key),
                jwks,
                signer,
            }),
        }
    }

    /// The validated settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The key every token is signed with.
    pub fn signing_key(&self) -> &Arc<SigningKey> {
        &self.inner.key
    }

    /// The JWKS document's bytes, as served.
    pub fn jwks(&self) -> &Bytes {
        &self.inner.jwks
    }

    /// The pool that performs every signature.
    pub fn signer(&self) -> &SigningPool {
        &self.inner.signer
    }
}
