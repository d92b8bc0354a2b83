//! The MACP runtime's view of a token: how it verifies, what it decodes.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, TokenData, Validation, decode, decode_header};
use serde::Deserialize;
use serde_json::Value;

/// The runtime's view of `macp_scopes`.
#[derive(Debug, Deserialize, PartialEq)]
pub struct RuntimeScopes {
    #[serde(default)]
    pub can_start_sessions: bool,
    #[serde(default)]
    pub can_manage_mode_registry: bool,
    pub is_observer: Option<bool>,
    pub allowed_modes: Option<Vec<String>>,
    pub max_open_sessions: Option<usize>,
}

/// The runtime's view of the claims.
#[derive(Debug, Deserialize)]
pub struct RuntimeClaims {
    pub sub: String,
    pub macp_scopes: Option<RuntimeScopes>,
}

/// Verifies `token` as the MACP runtime does: key chosen by the header's kid
/// from the JWKS, alg from the header but only RS256/ES256, signature, `iss`,
/// `aud`, `exp` and `sub` required, 60 s leeway.
pub fn verify_like_runtime(
    token: &str,
    jwks: &[u8],
    issuer: &str,
    audience: &str,
) -> Result<TokenData<RuntimeClaims>, String> {
    let header = decode_header(token).map_err(|err| format!("header: {err}"))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        return Err(format!("alg {:?} not allowed", header.alg));
    }
    let kid = header.kid.ok_or("no kid")?;
    let jwks: JwkSet = serde_json::from_slice(jwks).map_err(|err| format!("jwks: {err}"))?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("unknown kid {kid}"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|err| format!("jwk: {err}"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.leeway = 60;
    decode::<RuntimeClaims>(token, &key, &validation).map_err(|err| format!("verify: {err}"))
}

/// The decoded JSON of a token's header and payload, unverified.
pub fn token_parts(token: &str) -> (Value, Value, String) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS has three parts: {token}");
    let header = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
    (
        serde_json::from_slice(&header).unwrap(),
        serde_json::from_slice(&payload).unwrap(),
        String::from_utf8(payload).unwrap(),
    )
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
