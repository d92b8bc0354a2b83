//! Fetching an issuer's JWKS (and its discovery document) over HTTP(S).
//!
//! A minimal client on purpose: one GET per connection over hyper's http1
//! connection API, TLS by rustls on the AWS-LC provider the service already
//! carries, a 5 s deadline on the whole exchange and a 1 MiB body cap.
//! Fetches are rare (at most one per issuer per 10 s, normally one per
//! `max-age`), so pooling would buy nothing and cost a dependency.
//!
//! Production issuers are https (`https://kubernetes.default.svc` with the
//! cluster CA in `ca_file`, or public OIDC issuers with the system roots);
//! plain http is refused except to a loopback address, where it serves
//! tests and same-host sidecars.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;

use super::JwtTrust;

/// The deadline on one fetch: connect, TLS, request and body.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest discovery document or JWKS accepted.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Where OIDC discovery lives under an issuer.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Where a remote JWKS is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A `jwks_uri`.
    Jwks {
        /// The URL.
        uri: Uri,
        /// Trusted CA certificates instead of the system's.
        ca_file: Option<PathBuf>,
    },
    /// Discovery at `{issuer}/.well-known/openid-configuration`.
    Discovery {
        /// The issuer, as configured.
        issuer: String,
        /// Trusted CA certificates instead of the system's.
        ca_file: Option<PathBuf>,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Jwks { uri, .. } => write!(f, "{uri}"),
            Source::Discovery { issuer, .. } => {
                write!(f, "{}{DISCOVERY_PATH}", issuer.trim_end_matches('/'))
            }
        }
    }
}

impl Source {
    /// The remote source of a client without a `jwks_file`.
    pub(crate) fn for_trust(trust: &JwtTrust) -> Result<Source, String> {
        let ca_file = trust.ca_file.clone();
        if let Some(path) = &ca_file {
            read_ca_file(path).map_err(|failure| format!("\"jwt.ca_file\" {failure}"))?;
        }
        match &trust.jwks_uri {
            Some(uri) => Ok(Source::Jwks {
                uri: check_fetch_url(uri)
                    .map_err(|_| "\"jwt.jwks_uri\" is not usable".to_owned())?,
                ca_file,
            }),
            None => Ok(Source::Discovery {
                issuer: trust.issuer.clone(),
                ca_file,
            }),
        }
    }
}

/// Why a fetch failed; logged with the source, never with a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FetchFailure {
    /// The URL is not https (or http to loopback).
    Url,
    /// The exchange took longer than [`FETCH_TIMEOUT`].
    Timeout,
    /// No TCP connection.
    Connect(std::io::ErrorKind),
    /// The TLS handshake failed (or no roots to check against).
    Tls(String),
    /// The HTTP exchange failed.
    Http(String),
    /// A status other than 200.
    Status(u16),
    /// The body is too large or not JSON.
    Body,
    /// The discovery document is unusable.
    Discovery(&'static str),
    /// The JWKS is unusable.
    Jwks(&'static str),
    /// `ca_file` cannot be used.
    CaFile(String),
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchFailure::Url => write!(f, "not an https URL (http only to loopback)"),
            FetchFailure::Timeout => write!(f, "timed out after {} s", FETCH_TIMEOUT.as_secs()),
            FetchFailure::Connect(kind) => write!(f, "connection failed: {kind}"),
            FetchFailure::Tls(why) => write!(f, "TLS failed: {why}"),
            FetchFailure::Http(why) => write!(f, "HTTP failed: {why}"),
            FetchFailure::Status(status) => write!(f, "answered HTTP {status}"),
            FetchFailure::Body => write!(f, "body is not JSON of at most 1 MiB"),
            FetchFailure::Discovery(why) => write!(f, "discovery document {why}"),
            FetchFailure::Jwks(why) => write!(f, "JWKS {why}"),
            FetchFailure::CaFile(why) => write!(f, "ca_file {why}"),
        }
    }
}

/// Parses `url` and checks it may be fetched: https, or http to a loopback
/// address.
pub(crate) fn check_fetch_url(url: &str) -> Result<Uri, FetchFailure> {
    let uri: Uri = url.parse().map_err(|_| FetchFailure::Url)?;
    let host = uri.host().ok_or(FetchFailure::Url)?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        _ => Err(FetchFailure::Url),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Fetches the JWKS of `source` (after discovery, when it is one), with the
/// JWKS response's `Cache-Control: max-age`.
pub(crate) async fn fetch_jwks(source: &Source) -> Result<(Value, Option<Duration>), FetchFailure> {
    match source {
        Source::Jwks { uri, ca_file } => get_json(uri, ca_file.as_ref()).await,
        Source::Discovery { issuer, ca_file } => {
            let url = format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/'));
            let (document, _) = get_json(&check_fetch_url(&url)?, ca_file.as_ref()).await?;
            if document.get("issuer").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(FetchFailure::Discovery("names another issuer"));
            }
            let jwks_uri = document
                .get("jwks_uri")
                .and_then(Value::as_str)
                .ok_or(FetchFailure::Discovery("has no jwks_uri"))?;
            let jwks_uri = check_fetch_url(jwks_uri)
                .map_err(|_| FetchFailure::Discovery("has a jwks_uri that is not https"))?;
            get_json(&jwks_uri, ca_file.as_ref()).await
        }
    }
}

/// One GET of a JSON document, under [`FETCH_TIMEOUT`].
async fn get_json(
    uri: &Uri,
    ca_file: Option<&PathBuf>,
) -> Result<(Value, Option<Duration>), FetchFailure> {
    let (headers, body) = tokio::time::timeout(FETCH_TIMEOUT, get(uri, ca_file))
        .await
        .map_err(|_| FetchFailure::Timeout)??;
    let value = serde_json::from_slice(&body).map_err(|_| FetchFailure::Body)?;
    Ok((value, max_age(&headers)))
}

async fn get(uri: &Uri, ca_file: Option<&PathBuf>) -> Result<(HeaderMap, Bytes), FetchFailure> {
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or(FetchFailure::Url)?;
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((bare_host, port))
        .await
        .map_err(|err| FetchFailure::Connect(err.kind()))?;
    let request = Request::get(uri.path_and_query().map_or("/", |pq| pq.as_str()))
        .header(header::HOST, uri.authority().map_or(host, |a| a.as_str()))
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("macp-auth-service/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|err| FetchFailure::Http(err.to_string()))?;
    if https {
        let connector = tokio_rustls::TlsConnector::from(tls_config(ca_file)?);
        let name = ServerName::try_from(bare_host.to_owned())
            .map_err(|_| FetchFailure::Tls("invalid server name".into()))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|err| FetchFailure::Tls(err.to_string()))?;
        exchange(TokioIo::new(tls), request).await
    } else {
        exchange(TokioIo::new(tcp), request).await
    }
}

async fn exchange<IO>(
    io: IO,
    request: Request<Empty<Bytes>>,
) -> Result<(HeaderMap, Bytes), FetchFailure>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let http = |err: hyper::Error| FetchFailure::Http(err.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(http)?;
    // The connection runs beside the request and ends with it, even when
    // the deadline drops this future midway.
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender.send_request(request).await.map_err(http)?;
    if response.status() != StatusCode::OK {
        return Err(FetchFailure::Status(response.status().as_u16()));
    }
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| FetchFailure::Body)?
        .to_bytes();
    Ok((parts.headers, body))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `max-age` of `Cache-Control`; `no-cache`/`no-store` count as zero (the
/// caller clamps to its minimum).
pub(crate) fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-cache" || lower == "no-store" {
                return Some(Duration::ZERO);
            }
            if let Some(seconds) = lower.strip_prefix("max-age=") {
                found = seconds
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_secs);
            }
        }
    }
    found
}

fn tls_config(ca_file: Option<&PathBuf>) -> Result<Arc<rustls::ClientConfig>, FetchFailure> {
    let roots = match ca_file {
        Some(path) => read_ca_file(path)?,
        None => system_roots()?,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| FetchFailure::Tls(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificates of a PEM file, as a root store.
pub(crate) fn read_ca_file(path: &PathBuf) -> Result<rustls::RootCertStore, FetchFailure> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|_| {
            FetchFailure::CaFile(format!("{} is not a readable PEM file", path.display()))
        })?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(FetchFailure::CaFile(format!(
            "{} holds no usable certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// The system's trusted roots, loaded once.
fn system_roots() -> Result<rustls::RootCertStore, FetchFailure> {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    let roots = ROOTS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots
    });
    if roots.is_empty() {
        return Err(FetchFailure::Tls(
            "no system CA certificates; set \"jwt.ca_file\"".into(),
        ));
    }
    Ok(roots.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_https_or_loopback_http_may_be_fetched() {
        let cases = [
            ("https://kubernetes.default.svc", true),
            ("https://issuer.example/jwks", true),
            ("http://127.0.0.1:8080/jwks", true),
            ("http://[::1]:8080/jwks", true),
            ("http://localhost/jwks", true),
            ("http://issuer.example/jwks", false),
            ("http://10.0.0.1/jwks", false),
            ("ftp://127.0.0.1/jwks", false),
            ("/jwks", false),
            ("not a url", false),
        ];
        for (url, ok) in cases {
            assert_eq!(check_fetch_url(url).is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        let cases = [
            (Some("public, max-age=120"), Some(120)),
            (Some("max-age=\"30\""), Some(30)),
            (Some("no-cache"), Some(0)),
            (Some("private, no-store"), Some(0)),
            (Some("public"), None),
            (Some("max-age=soon"), None),
            (None, None),
        ];
        for (value, expected) in cases {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
            }
            assert_eq!(
                max_age(&headers),
                expected.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_discovery_source_names_the_well_known_document() {
        let source = Source::Discovery {
            issuer: "https://kubernetes.default.svc/".into(),
            ca_file: None,
        };
        assert_eq!(
            source.to_string(),
            "https://kubernetes.default.svc/.well-known/openid-configuration"
        );
    }

    #[tokio::test]
    async fn an_unreachable_source_fails_to_connect() {
        // Bind, learn the port, close: nothing listens there now.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let source = Source::Jwks {
            uri: check_fetch_url(&format!("http://127.0.0.1:{port}/jwks")).unwrap(),
            ca_file: None,
        };
        assert!(matches!(
            fetch_jwks(&source).await,
            Err(FetchFailure::Connect(_))
        ));
    }
}
