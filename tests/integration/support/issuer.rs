//! A stand-in OIDC issuer, served by the test on 127.0.0.1: its own keys
//! (generated with aws-lc-rs), a discovery document, a JWKS with
//! `Cache-Control`, and tokens signed with jsonwebtoken's AWS-LC backend.
//! It can rotate to a new key, stop serving (the port then refuses
//! connections) and count the fetches it answered, so tests can watch the
//! service's key cache from the outside. [`Issuer::start_tls`] serves it
//! over https as `https://localhost:<port>`, with a certificate from a
//! throwaway CA (rcgen on AWS-LC) whose PEM the service is given as
//! `ca_file`, the way a cluster CA is.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The path the discovery document points at.
pub const JWKS_PATH: &str = "/openid/v1/jwks";

/// One signing key of the issuer.
pub struct IssuerKey {
    /// Its kid.
    pub kid: String,
    /// RS256 or ES256.
    pub alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl IssuerKey {
    /// A fresh key of `alg`.
    pub fn generate(kid: &str, alg: Algorithm) -> IssuerKey {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match alg {
            Algorithm::RS256 => {
                let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
                let pkcs8 = pair.as_der().unwrap();
                let info = pkcs8::PrivateKeyInfoRef::try_from(pkcs8.as_ref()).unwrap();
                let der = info.private_key.as_bytes();
                let rsa = pkcs1::RsaPrivateKeyRef::try_from(der).unwrap();
                IssuerKey {
                    kid: kid.to_owned(),
                    alg,
                    encoding: EncodingKey::from_rsa_der(der),
                    jwk: json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                        "n": b64(rsa.modulus.as_bytes()), "e": b64(rsa.public_exponent.as_bytes())}),
                }
            }
            Algorithm::ES256 => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .unwrap();
                let pair =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                        .unwrap();
                let point = pair.public_key().as_ref();
                IssuerKey {
                    kid: kid.to_owned(),
                    alg,
                    encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
                    jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                        "x": b64(&point[1..33]), "y": b64(&point[33..])}),
                }
            }
            other => panic!("the stand-in issuer signs RS256 or ES256, not {other:?}"),
        }
    }

    /// Signs `claims` with this key, naming `kid` in the header.
    pub fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

struct Shared {
    issuer: String,
    /// Published keys; the last one signs.
    keys: Mutex<Vec<Arc<IssuerKey>>>,
    max_age: AtomicU64,
    discovery_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
}

/// The running issuer.
pub struct Issuer {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    /// The CA certificate (PEM) of a TLS issuer.
    ca_pem: Option<String>,
}

impl Issuer {
    /// Starts an issuer with one RS256 key, `k1`, and `max-age=300`.
    pub async fn start() -> Issuer {
        Issuer::start_with(IssuerKey::generate("k1", Algorithm::RS256)).await
    }

    /// Starts an issuer publishing and signing with `key`.
    pub async fn start_with(key: IssuerKey) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared::new(format!("http://{addr}"), key);
        let app = router(shared.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Issuer {
            addr,
            shared,
            shutdown: Some(shutdown),
            task: Some(task),
            ca_pem: None,
        }
    }

    /// Starts an RS256 issuer at `https://localhost:<port>`, its certificate
    /// (for `localhost`) signed by a fresh CA; [`Issuer::ca_pem`] is that CA.
    pub async fn start_tls() -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared::new(
            format!("https://localhost:{}", addr.port()),
            IssuerKey::generate("k1", Algorithm::RS256),
        );
        let (ca_pem, tls) = tls_config();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let app = router(shared.clone());
        let (shutdown, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => accepted.unwrap().0,
                    _ = &mut stopped => return,
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Issuer {
            addr,
            shared,
            shutdown: Some(shutdown),
            task: Some(task),
            ca_pem: Some(ca_pem),
        }
    }

    /// The PEM of the CA that signed a TLS issuer's certificate.
    pub fn ca_pem(&self) -> &str {
        self.ca_pem.as_deref().expect("a TLS issuer")
    }
}

impl Shared {
    fn new(issuer: String, key: IssuerKey) -> Arc<Shared> {
        Arc::new(Shared {
            issuer,
            keys: Mutex::new(vec![Arc::new(key)]),
            max_age: AtomicU64::new(300),
            discovery_fetches: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
        })
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route(JWKS_PATH, get(jwks))
        .with_state(shared)
}

/// A CA (its PEM) and a server configuration for `localhost` signed by it.
fn tls_config() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer as CaIssuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = CaIssuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server_cert.der().clone()], key)
        .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

impl Issuer {
    /// The issuer identifier (`iss`), `http://127.0.0.1:<port>`.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The JWKS URL.
    pub fn jwks_uri(&self) -> String {
        format!("{}{JWKS_PATH}", self.shared.issuer)
    }

    /// The JWKS document as served now.
    pub fn jwks(&self) -> Value {
        let keys = self.shared.keys.lock().unwrap();
        json!({"keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>()})
    }

    /// The current signing key.
    pub fn signing_key(&self) -> Arc<IssuerKey> {
        self.shared.keys.lock().unwrap().last().unwrap().clone()
    }

    /// Claims of a token for `sub` and `aud`, valid for ten minutes.
    pub fn claims(&self, sub: &str, aud: &str) -> Value {
        let now = crate::support::now();
        json!({"iss": self.issuer(), "sub": sub, "aud": [aud], "iat": now, "nbf": now, "exp": now + 600})
    }

    /// `claims` signed by the current key, naming its kid.
    pub fn token(&self, claims: &Value) -> String {
        let key = self.signing_key();
        key.sign(Some(&key.kid), claims)
    }

    /// Publishes a new RS256 key `kid` beside the old ones and signs with
    /// it from now on.
    pub fn rotate(&self, kid: &str) {
        let key = Arc::new(IssuerKey::generate(kid, Algorithm::RS256));
        self.shared.keys.lock().unwrap().push(key);
    }

    /// Discovery documents served so far.
    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// JWKS documents served so far.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Stops serving and closes the port: fetches then fail to connect.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn discovery(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "issuer": shared.issuer,
        "jwks_uri": format!("{}{JWKS_PATH}", shared.issuer),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

async fn jwks(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = shared
        .keys
        .lock()
        .unwrap()
        .iter()
        .map(|key| key.jwk.clone())
        .collect();
    let max_age = shared.max_age.load(Ordering::SeqCst);
    (
        [(header::CACHE_CONTROL, format!("public, max-age={max_age}"))],
        axum::Json(json!({ "keys": keys })),
    )
}
