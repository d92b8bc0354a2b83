//! Shared test helpers: cached keys, in-process requests, a server on an
//! ephemeral port, and a verifier that behaves like the MACP runtime.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, TokenData, Validation, decode, decode_header};
use macp_auth_service::clock::{Clock, SystemClock};
use macp_auth_service::keys::SigningAlg;
use macp_auth_service::keys::ring::KeyRing;
use macp_auth_service::keys::store::KeyStore;
use macp_auth_service::keys::{KeySource, SigningKey, generate_private_jwk};
use macp_auth_service::reload::Source;
use macp_auth_service::signer::SigningPool;
use macp_auth_service::{AppState, Config, ServeError, router, run};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;

/// A private JWK for `alg`, generated once per test binary.
pub fn private_jwk(alg: SigningAlg) -> &'static str {
    static RSA: OnceLock<String> = OnceLock::new();
    static EC: OnceLock<String> = OnceLock::new();
    let cell = match alg {
        SigningAlg::Rs256 => &RSA,
        SigningAlg::Es256 => &EC,
    };
    cell.get_or_init(|| {
        let kid = format!("{}-test-key", alg.as_str().to_lowercase());
        Value::Object(generate_private_jwk(alg, 2048, Some(&kid)).unwrap()).to_string()
    })
}

/// Default settings, signing with `alg`.
pub fn config(alg: SigningAlg) -> Config {
    {
        let mut config = Config::default();
        config.keys.alg = alg;
        config
    }
}

/// State signing with the cached pinned key for `alg`.
pub fn state_with(config: Config) -> AppState {
    let key = SigningKey::from_jwk_json(
        config.keys.alg,
        private_jwk(config.keys.alg),
        KeySource::Env,
    )
    .unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys = Arc::new(KeyStore::single(&config, key, clock.clone()));
    AppState::new(config, keys, clock, SigningPool::new(2, 64).unwrap()).unwrap()
}

/// State serving the ring in `ring_text` (a JWK Set) by `clock`.
pub fn state_with_ring(config: Config, ring_text: &str, clock: Arc<dyn Clock>) -> AppState {
    let ring = KeyRing::parse(config.keys.alg, ring_text, KeySource::Env).unwrap();
    ring.validate(clock.now(), config.tokens.max_ttl_seconds)
        .unwrap();
    let keys = Arc::new(KeyStore::new(&config, ring, Source::Inline, clock.clone()));
    AppState::new(config, keys, clock, SigningPool::new(2, 64).unwrap()).unwrap()
}

/// State with default settings and the cached RS256 key.
pub fn state() -> AppState {
    state_with(config(SigningAlg::Rs256))
}

/// A response, its body parsed as JSON (`Value::Null` for an empty body, a
/// JSON string for a body that is not JSON, such as metrics).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

/// Sends one request through the router in process.
pub async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = router(state.clone())
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let is_json = headers
        .get("content-type")
        .is_some_and(|value| value.to_str().unwrap_or("").starts_with("application/json"));
    let json = if bytes.is_empty() {
        Value::Null
    } else if is_json {
        serde_json::from_slice(&bytes).unwrap_or_else(|err| {
            panic!(
                "body is not JSON ({err}): {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })
    } else {
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    };
    Reply {
        status,
        headers,
        json,
    }
}

/// `POST /tokens` with a JSON body.
pub async fn mint(state: &AppState, body: &str) -> Reply {
    send(
        state,
        Method::POST,
        "/tokens",
        Some("application/json"),
        body.to_owned(),
    )
    .await
}

/// A service listening on `127.0.0.1:0` in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), ServeError>>,
}

impl TestServer {
    pub async fn start(state: AppState) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, state, async move {
            let _ = signal.await;
        }));
        TestServer {
            addr,
            shutdown: Some(shutdown),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown; the caller awaits `task` to see how serving ended.
    pub fn signal_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

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
