//! The service in this process: state built the way a test needs it, sent
//! requests through the router alone (`oneshot`, no socket), or started as
//! the real [`Service`] on `127.0.0.1:0` (listener, metrics listener,
//! maintenance and the shutdown order, exactly as the binary runs them).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use macp_auth_service::app::Service;
use macp_auth_service::clock::{Clock, SystemClock};
use macp_auth_service::config::{KeyMaterial, RateLimit};
use macp_auth_service::keys::ring::KeyRing;
use macp_auth_service::keys::store::{KeyStore, load_ring};
use macp_auth_service::keys::{KeySource, SigningAlg, SigningKey};
use macp_auth_service::signer::SigningPool;
use macp_auth_service::{AppState, Config, ServeError, router};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use super::keys::private_jwk;
use super::logs;

/// Default settings signing with `alg`, listening on `127.0.0.1:0`.
pub fn config(alg: SigningAlg) -> Config {
    logs::install();
    let mut config = Config::default();
    config.keys.alg = alg;
    config.listen.host = [127, 0, 0, 1].into();
    config.listen.port = 0;
    config
}

/// Where the builder's signing keys come from.
enum Keys {
    /// The cached pinned key for the configured algorithm.
    Cached,
    /// This JWK Set, as if from the environment.
    Ring(String),
    /// Whatever the configuration names: ephemeral, inline or a file.
    FromConfig,
}

/// Builds test state and apps: every option a test varies, with defaults
/// that match the service's, signing with a cached key.
pub struct AppBuilder {
    config: Config,
    keys: Keys,
    clock: Arc<dyn Clock>,
    signer: (usize, usize),
}

impl AppBuilder {
    /// Default settings signing with the cached `alg` key.
    pub fn new(alg: SigningAlg) -> Self {
        AppBuilder {
            config: config(alg),
            keys: Keys::Cached,
            clock: Arc::new(SystemClock),
            signer: (2, 64),
        }
    }

    /// Starts from `config` (its listen address is moved to `127.0.0.1:0`).
    pub fn from(mut config: Config) -> Self {
        config.listen.host = [127, 0, 0, 1].into();
        config.listen.port = 0;
        AppBuilder {
            config,
            ..Self::new(SigningAlg::Rs256)
        }
    }

    /// Serves the JWK Set `text` (validated against the clock at build).
    pub fn ring(mut self, text: &str) -> Self {
        self.keys = Keys::Ring(text.to_owned());
        self
    }

    /// Loads keys as the configuration says: an ephemeral key by default.
    pub fn keys_from_config(mut self) -> Self {
        self.keys = Keys::FromConfig;
        self
    }

    /// Reads the ring from `path`, checking it every `poll` when given.
    pub fn key_file(mut self, path: &std::path::Path, poll: Option<Duration>) -> Self {
        self.config.keys.file = Some(path.to_owned());
        self.config.keys.poll_interval = poll;
        self.keys = Keys::FromConfig;
        self
    }

    /// Decides every instant by `clock`.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Requires the client credentials in `json` (a client list).
    pub fn clients(mut self, json: String) -> Self {
        self.config.clients.inline = Some(KeyMaterial::new(json));
        self
    }

    /// Limits minting to `burst` at once, refilled at `per_second`.
    pub fn rate_limit(mut self, per_second: f64, burst: u32) -> Self {
        self.config.clients.rate_limit = Some(RateLimit { per_second, burst });
        self
    }

    /// Publishes `url` as the issuer's public base URL.
    pub fn public_url(mut self, url: &str) -> Self {
        self.config.listen.public_url = Some(url.to_owned());
        self
    }

    /// Serves `/metrics` on its own listener on `127.0.0.1:0`.
    pub fn metrics_listener(mut self) -> Self {
        self.config.listen.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        self
    }

    /// Keeps serving for `delay` after readiness fails.
    pub fn shutdown_delay(mut self, delay: Duration) -> Self {
        self.config.limits.shutdown_delay = delay;
        self
    }

    /// Signing threads and queue places.
    pub fn signer(mut self, threads: usize, queue: usize) -> Self {
        self.signer = (threads, queue);
        self
    }

    /// Any other setting (TTLs, timeouts, connection cap, issuer...).
    pub fn configure(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// The state these settings describe.
    pub fn state(self) -> AppState {
        let AppBuilder {
            config,
            keys,
            clock,
            signer,
        } = self;
        let store = match keys {
            Keys::Cached => {
                let jwk = private_jwk(config.keys.alg);
                let key = SigningKey::from_jwk_json(config.keys.alg, jwk, KeySource::Env).unwrap();
                KeyStore::single(&config, key, clock.clone())
            }
            Keys::Ring(text) => {
                let ring = KeyRing::parse(config.keys.alg, &text, KeySource::Env).unwrap();
                ring.validate(clock.now(), config.tokens.max_ttl_seconds)
                    .unwrap();
                KeyStore::new(
                    &config,
                    ring,
                    macp_auth_service::reload::Source::Inline,
                    clock.clone(),
                )
            }
            Keys::FromConfig => {
                let (ring, source) = load_ring(&config, clock.now()).unwrap();
                KeyStore::new(&config, ring, source, clock.clone())
            }
        };
        let pool = SigningPool::new(signer.0, signer.1).unwrap();
        AppState::new(config, Arc::new(store), clock, pool).unwrap()
    }

    /// Starts the real service with these settings.
    pub async fn start(self) -> TestApp {
        TestApp::start(self.state()).await
    }
}

/// State with default settings and the cached RS256 key.
pub fn state() -> AppState {
    AppBuilder::new(SigningAlg::Rs256).state()
}

/// State for `config`, signing with the cached key for its algorithm.
pub fn state_with(config: Config) -> AppState {
    AppBuilder::from(config).state()
}

/// State serving the ring in `ring_text` (a JWK Set) by `clock`.
pub fn state_with_ring(config: Config, ring_text: &str, clock: Arc<dyn Clock>) -> AppState {
    AppBuilder::from(config)
        .ring(ring_text)
        .clock(clock)
        .state()
}

/// A response, its body parsed as JSON (`Value::Null` for an empty body, a
/// JSON string for a body that is not JSON, such as metrics).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
    pub body: Bytes,
}

impl Reply {
    /// Parses a body by its content type; a JSON content type must hold JSON.
    pub fn new(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        let is_json = headers
            .get("content-type")
            .is_some_and(|value| value.to_str().unwrap_or("").starts_with("application/json"));
        let json = if body.is_empty() {
            Value::Null
        } else if is_json {
            serde_json::from_slice(&body).unwrap_or_else(|err| {
                panic!(
                    "body is not JSON ({err}): {:?}",
                    String::from_utf8_lossy(&body)
                )
            })
        } else {
            Value::String(String::from_utf8_lossy(&body).into_owned())
        };
        Reply {
            status,
            headers,
            json,
            body,
        }
    }
}

/// The kids a JWKS document publishes, in order.
pub fn jwks_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// One request through `app` in process: status, headers and raw body.
pub async fn oneshot(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes)
}

/// One request with `headers` through the router over `state`, no socket.
pub async fn request(
    state: &AppState,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (status, headers, body) =
        oneshot(&router(state.clone()), request.body(body.into()).unwrap()).await;
    Reply::new(status, headers, body)
}

/// One request through the router with an optional content type.
pub async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Reply {
    let headers: Vec<(&str, &str)> = content_type
        .map(|value| ("content-type", value))
        .into_iter()
        .collect();
    request(state, method, uri, &headers, body).await
}

/// `POST /tokens` with a JSON body through the router.
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

/// The real [`Service`] on `127.0.0.1:0` in this process.
pub struct TestApp {
    pub addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    client: reqwest::Client,
}

impl TestApp {
    /// Default settings, signing with the cached `alg` key.
    pub fn builder(alg: SigningAlg) -> AppBuilder {
        AppBuilder::new(alg)
    }

    /// Binds the listeners `state`'s configuration names and serves.
    pub async fn start(state: AppState) -> Self {
        let service = Service::with_state(state.clone()).await.unwrap();
        let addr = service.local_addr();
        let metrics_addr = service.metrics_addr();
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(service.run_until(async move {
            let _ = signal.await;
        }));
        TestApp {
            addr,
            metrics_addr,
            state,
            shutdown: Some(shutdown),
            task: Some(task),
            client: reqwest::Client::new(),
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `path` on the metrics listener; panics if there is none.
    pub fn metrics_url(&self, path: &str) -> String {
        let addr = self.metrics_addr.expect("started with metrics_listener()");
        format!("http://{addr}{path}")
    }

    /// The metrics listener's address, when it has one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The state the service runs on.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Sends one request over HTTP to `path` (a full URL is used as is).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            self.url(path)
        };
        let mut request = self.client.request(method, url).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap();
        Reply::new(status, headers, body)
    }

    /// `GET path` over HTTP.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], "").await
    }

    /// `POST /tokens` with a JSON body over HTTP.
    pub async fn mint(&self, body: &str) -> Reply {
        let headers = [("content-type", "application/json")];
        self.send(Method::POST, "/tokens", &headers, body.to_owned())
            .await
    }

    /// Sends a mint request's head and the first 5 bytes of `body`, leaving
    /// the request in flight: the server waits for the rest of the body,
    /// which the caller writes to the returned stream.
    pub async fn start_request(&self, body: &str) -> TcpStream {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let head = format!(
            "POST /tokens HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body.as_bytes()[..5]).await.unwrap();
        // Give the server time to accept the connection and read the head.
        tokio::time::sleep(Duration::from_millis(150)).await;
        stream
    }

    /// Completes the shutdown future: readiness fails, the drain begins.
    pub fn signal_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Whether `run_until` has returned.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// How serving ended; panics unless it ends within `limit`.
    pub async fn finished(&mut self, limit: Duration) -> Result<(), ServeError> {
        let task = self.task.take().expect("awaited once");
        tokio::time::timeout(limit, task)
            .await
            .unwrap_or_else(|_| panic!("the service did not stop within {limit:?}"))
            .expect("the service task does not panic")
    }

    /// Signals shutdown and requires a clean drain within 5 s.
    pub async fn shutdown(mut self) {
        self.signal_shutdown();
        self.finished(Duration::from_secs(5))
            .await
            .expect("the drain completes");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}
