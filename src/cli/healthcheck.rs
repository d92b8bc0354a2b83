//! A minimal HTTP probe for `macp-auth-service healthcheck`.
//!
//! Distroless and scratch images have no shell, curl or wget, so the
//! container's HEALTHCHECK runs the service's own binary. The probe speaks
//! plain HTTP/1.1 through hyper (already part of the server), because it only
//! ever targets the service on its own host.

use std::process::ExitCode;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::fail;
use crate::config::Config;
use crate::http::routes::HEALTHZ_PATH;

/// How long the whole probe may take.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a probe did not see a healthy service. The messages leave the URL
/// out (the caller prints it once) and end with what to check next.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    /// The URL is not an `http://host[:port]/path` URL.
    #[error("not an http:// URL with a host; pass --url like http://127.0.0.1:3200/healthz")]
    BadUrl,
    /// Connecting or exchanging the request failed.
    #[error(
        "request failed: {0}; check that the service runs and that PORT and HOST here match its own, or pass --url"
    )]
    Transport(String),
    /// An answer came, but not 200.
    #[error("answered {0}, not 200; check the path, and the service's log")]
    Status(StatusCode),
    /// No answer within the timeout.
    #[error(
        "no answer within {0:?}; the service may be overloaded or stuck: check its log and CPU"
    )]
    Timeout(Duration),
}

/// GETs `url` and succeeds only on a 200 within `timeout`.
pub(crate) async fn probe(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let uri: Uri = url.parse().map_err(|_| ProbeError::BadUrl)?;
    let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority().cloned()) else {
        return Err(ProbeError::BadUrl);
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(80);
    let path = uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();

    let exchange = async move {
        let transport = |err: &dyn std::fmt::Display| ProbeError::Transport(err.to_string());
        let stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|err| transport(&err))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| transport(&err))?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(header::HOST, authority.as_str())
            .header(header::USER_AGENT, "macp-auth-service-healthcheck")
            .body(Body::empty())
            .map_err(|err| transport(&err))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| transport(&err))?;
        match response.status() {
            StatusCode::OK => Ok(()),
            status => Err(ProbeError::Status(status)),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

/// The URL `healthcheck` probes when none is given: `/healthz` on the
/// configured port, over loopback unless the service binds one address only.
pub(crate) fn default_healthcheck_url(config: &Config) -> String {
    let host = match config.listen.host {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    format!("http://{host}:{}{HEALTHZ_PATH}", config.listen.port)
}

/// Runs `healthcheck`: probes `url`, or `/healthz` on the configured port.
pub fn run(url: Option<String>) -> ExitCode {
    let url = match url {
        Some(url) => url,
        None => match Config::from_env() {
            Ok(config) => default_healthcheck_url(&config),
            Err(err) => return fail(format_args!("invalid configuration: {err}")),
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(format_args!("cannot start the async runtime: {err}")),
    };
    match runtime.block_on(probe(&url, PROBE_TIMEOUT)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(format_args!("unhealthy: {url}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_other_than_plain_http_are_refused() {
        for url in [
            "https://localhost/healthz",
            "localhost:3200",
            "not a url",
            "file:///etc",
        ] {
            let err = probe(url, PROBE_TIMEOUT).await.unwrap_err();
            assert!(matches!(err, ProbeError::BadUrl), "{url}: {err:?}");
            assert!(
                !err.to_string().contains(url),
                "the caller prints the URL once"
            );
        }
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transport_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = probe(&format!("http://127.0.0.1:{port}/healthz"), PROBE_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::Transport(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        // Accepts the connection but never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _held = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let err = probe(
            &format!("http://{addr}/healthz"),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProbeError::Timeout(_)), "{err:?}");
    }
}
