//! The HTTP client that carries OTLP export requests to the collector.
//!
//! `opentelemetry-otlp` offers reqwest (blocking or async) and hyper-util's
//! pooled client as features. Each brings a second HTTP stack (reqwest with
//! its own Tokio runtime thread, or hyper-util's legacy client with HTTP/2
//! and `h2`) into a binary that already has hyper's HTTP/1.1 client. Export
//! is one POST every few seconds to a collector on the node or in the
//! cluster, so this client is hyper's connection API over a Tokio socket:
//! a fresh connection per batch, no pool, plain HTTP.
//!
//! The SDK's batch processor calls the exporter from its own thread, outside
//! the Tokio runtime; each request is therefore spawned onto the service's
//! runtime through a handle and awaited from that thread. A deadline covers
//! connect, send and the response body; the response body is capped.

use std::time::Duration;

use async_trait::async_trait;
use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use opentelemetry_http::{Bytes, HttpClient, HttpError};
use tokio::net::TcpStream;
use tokio::runtime::Handle;

/// Largest collector response read (an `ExportTraceServiceResponse` is a few
/// bytes; an error page should not be buffered without bound).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Sends export requests on the service's Tokio runtime.
#[derive(Debug, Clone)]
pub(crate) struct ExportClient {
    runtime: Handle,
    timeout: Duration,
}

impl ExportClient {
    /// A client whose requests run on `runtime` and give up after `timeout`.
    pub(crate) fn new(runtime: Handle, timeout: Duration) -> Self {
        ExportClient { runtime, timeout }
    }
}

#[async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let timeout = self.timeout;
        let task = self
            .runtime
            .spawn(async move { tokio::time::timeout(timeout, send(request)).await });
        // A runtime that has shut down cancels the task: an error, not a hang.
        match task.await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(format!("no answer from the collector within {timeout:?}").into()),
            Err(_) => Err("the runtime stopped before the export finished".into()),
        }
    }
}

/// One request on a fresh HTTP/1.1 connection.
async fn send(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (mut parts, body) = request.into_parts();
    let host = parts
        .uri
        .host()
        .ok_or("the endpoint has no host")?
        .to_owned();
    let port = parts.uri.port_u16().unwrap_or(80);
    let authority = parts
        .uri
        .authority()
        .ok_or("the endpoint has no host")?
        .as_str()
        .to_owned();
    // An IPv6 literal keeps its brackets in the URI but not for connect.
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((connect_host, port)).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the response is read and `sender` is dropped.
        let _ = connection.await;
    });

    // HTTP/1.1 wants the path in the request line and the authority in Host.
    parts.uri = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
        .into();
    parts
        .headers
        .insert(HOST, HeaderValue::from_str(&authority)?);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;

    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_RESPONSE_BYTES)
        .collect()
        .await?
        .to_bytes();
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn export_request(port: u16) -> Request<Bytes> {
        Request::post(format!("http://127.0.0.1:{port}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .header("api-key", "k1")
            .body(Bytes::from_static(b"spans"))
            .unwrap()
    }

    /// Sends from a plain thread through the SDK's executor, as the batch
    /// thread does: no Tokio context there.
    async fn send_from_batch_thread(
        client: ExportClient,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, HttpError> {
        // A blocking-pool thread is outside the runtime context, and the
        // runtime's own thread stays free to carry the request.
        tokio::task::spawn_blocking(move || futures_executor::block_on(client.send_bytes(request)))
            .await
            .unwrap()
    }

    /// Accepts one connection, reads one request with its body, answers with
    /// `reply`, and hands back the raw request.
    async fn one_shot_server(reply: Vec<u8>) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&raw).contains("\r\n\r\nspans") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed mid-request");
                raw.extend_from_slice(&buf[..n]);
            }
            socket.write_all(&reply).await.unwrap();
            String::from_utf8(raw).unwrap()
        });
        (port, task)
    }

    #[tokio::test]
    async fn an_export_is_posted_in_origin_form_with_host_headers_and_body() {
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
        let (port, server) = one_shot_server(reply).await;
        let client = ExportClient::new(Handle::current(), Duration::from_secs(5));
        let response = send_from_batch_thread(client, export_request(port))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.body().as_ref(), b"ok");
        let raw = server.await.unwrap().to_lowercase();
        assert!(raw.starts_with("post /v1/traces http/1.1\r\n"), "{raw}");
        assert!(
            raw.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{raw}"
        );
        assert!(
            raw.contains("content-type: application/x-protobuf\r\n"),
            "{raw}"
        );
        assert!(raw.contains("api-key: k1\r\n"), "{raw}");
        assert!(raw.ends_with("\r\n\r\nspans"), "{raw}");
    }

    #[tokio::test]
    async fn error_statuses_are_answers_not_transport_errors() {
        let reply = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec();
        let (port, _server) = one_shot_server(reply).await;
        let client = ExportClient::new(Handle::current(), Duration::from_secs(5));
        let response = send_from_batch_thread(client, export_request(port))
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
    }

    #[tokio::test]
    async fn an_oversized_response_is_refused() {
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            MAX_RESPONSE_BYTES + 1
        )
        .into_bytes();
        reply.resize(reply.len() + MAX_RESPONSE_BYTES + 1, b'x');
        let (port, _server) = one_shot_server(reply).await;
        let client = ExportClient::new(Handle::current(), Duration::from_secs(5));
        let outcome = send_from_batch_thread(client, export_request(port)).await;
        assert!(outcome.is_err(), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = ExportClient::new(Handle::current(), Duration::from_secs(5));
        let outcome = send_from_batch_thread(client, export_request(port)).await;
        assert!(outcome.is_err(), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_collector_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(socket);
        });
        let client = ExportClient::new(Handle::current(), Duration::from_millis(200));
        let err = send_from_batch_thread(client, export_request(port))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err}");
    }

    #[test]
    fn a_stopped_runtime_fails_the_export_instead_of_hanging() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = ExportClient::new(runtime.handle().clone(), Duration::from_secs(60));
        drop(runtime);
        let outcome = futures_executor::block_on(client.send_bytes(export_request(9)));
        let err = outcome.unwrap_err();
        assert!(err.to_string().contains("runtime stopped"), "{err}");
    }
}
