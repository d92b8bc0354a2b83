//! Which client a bearer credential belongs to: a secret, or a workload JWT.
//!
//! Secrets are tried first, exactly as before JWT clients existed, so a
//! list of secret clients behaves unchanged. Only a credential that matches
//! no secret, has the shape of a compact JWS, and meets a list with JWT
//! clients goes through JWT verification; anything else stays "unknown
//! client credentials". Each outcome has a label for the
//! `client_authentications` metric.

use super::jwt::{self, JwtFailure, JwtTrust, KeyHandle};
use super::{Client, ClientList};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated<'a> {
    /// Its client.
    pub(crate) client: &'a Client,
    /// The `sub` of its JWT, when it authenticated with one.
    pub(crate) subject: Option<String>,
}

/// Why a credential authenticated no client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// Matches no secret, and is not a JWT some client could accept.
    UnknownSecret,
    /// A JWT, refused for this reason.
    Jwt(JwtFailure),
}

impl AuthFailure {
    /// The `result` label of the authentication metric.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthFailure::UnknownSecret => "unknown_secret",
            AuthFailure::Jwt(failure) => failure.as_str(),
        }
    }
}

impl ClientList {
    /// Authenticates a bearer credential; `now` is Unix seconds. May fetch
    /// an issuer's keys (at most 5 s per fetch, one fetch per issuer at a
    /// time).
    pub(crate) async fn authenticate_bearer(
        &self,
        credential: &str,
        now: u64,
    ) -> Result<Authenticated<'_>, AuthFailure> {
        if let Some(client) = self.authenticate(credential) {
            return Ok(Authenticated {
                client,
                subject: None,
            });
        }
        if !self.has_jwt_clients() || credential.split('.').count() != 3 {
            return Err(AuthFailure::UnknownSecret);
        }
        self.authenticate_jwt(credential, now)
            .await
            .map_err(AuthFailure::Jwt)
    }

    async fn authenticate_jwt(
        &self,
        token: &str,
        now: u64,
    ) -> Result<Authenticated<'_>, JwtFailure> {
        let unverified = jwt::peek(token)?;
        let candidates: Vec<(&Client, &JwtTrust)> = self
            .clients()
            .iter()
            .filter_map(|client| {
                let jwt = client.jwt()?;
                (jwt.trust.issuer == unverified.issuer).then_some((client, &jwt.trust))
            })
            .collect();
        // Clients of one issuer share one key source (checked at load).
        let Some(handle) = candidates
            .first()
            .and_then(|(client, _)| client.jwt())
            .map(|jwt| &jwt.keys)
        else {
            return Err(JwtFailure::UnknownIssuer);
        };
        let keys = match handle {
            KeyHandle::Static(keys) => keys.clone(),
            KeyHandle::Remote(remote) => remote.keys_for(unverified.kid.as_deref()).await?,
        };
        let (client, caller) = jwt::verify(token, &unverified, &keys, &candidates, now)?;
        Ok(Authenticated {
            client,
            subject: Some(caller.subject),
        })
    }
}
