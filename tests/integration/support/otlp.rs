//! An OTLP/HTTP trace receiver served by the test on 127.0.0.1, standing in
//! for an OpenTelemetry Collector.
//!
//! It accepts `POST /v1/traces` with an `application/x-protobuf`
//! `ExportTraceServiceRequest`, decodes it with the `opentelemetry-proto`
//! types (the same definitions a collector uses), and keeps every span with
//! its resource, plus the headers of every request, for assertions. A body
//! that does not decode is answered 400 and recorded, so a test can assert
//! that the service sent only valid requests.
//!
//! For collector outages there are two stand-ins: [`closed_endpoint`] (an
//! address nothing listens on: connections are refused) and [`Blackhole`]
//! (accepts connections and never answers: exports hang until their timeout).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// An attribute value as received.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, maps and bytes: not used by the service, kept as a marker.
    Other,
}

/// One received span, ids in lowercase hex as in a `traceparent`.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The OTLP `SpanKind` number (2 = server, 1 = internal).
    pub kind: i32,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: BTreeMap<String, Attr>,
    /// The attributes of the resource the span was exported under.
    pub resource: BTreeMap<String, Attr>,
    /// The status code number (0 unset, 1 ok, 2 error).
    pub status_code: i32,
}

impl ReceivedSpan {
    /// A string attribute, if present and a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(Attr::Str(value)) => Some(value),
            _ => None,
        }
    }

    /// An integer attribute, if present and an integer.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(Attr::Int(value)) => Some(*value),
            _ => None,
        }
    }

    /// The span's duration by its own timestamps.
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nanos.saturating_sub(self.start_unix_nanos))
    }
}

/// One export request as received.
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    pub headers: HeaderMap,
    /// Spans in the request, or `None` when the body did not decode.
    pub spans: Option<usize>,
}

#[derive(Default)]
struct Shared {
    spans: Mutex<Vec<ReceivedSpan>>,
    requests: Mutex<Vec<ReceivedRequest>>,
    arrived: Notify,
}

/// A running receiver; stops when dropped or with [`OtlpReceiver::stop`].
pub struct OtlpReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Serves on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Serves on `addr`, such as the address of a receiver that stopped.
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        OtlpReceiver {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter appends
    /// `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.spans.lock().unwrap().clone()
    }

    /// Every export request received so far.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until `ready` holds for the spans received, up to `timeout`;
    /// returns the spans either way, so the caller's assertion shows what
    /// did arrive.
    pub async fn wait_for<F>(&self, timeout: Duration, ready: F) -> Vec<ReceivedSpan>
    where
        F: Fn(&[ReceivedSpan]) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            let spans = self.spans();
            if ready(&spans) {
                return spans;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, arrived).await.is_err() {
                return self.spans();
            }
        }
    }

    /// Stops serving; the port then refuses connections.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let decoded = ExportTraceServiceRequest::decode(body);
    let spans = decoded.as_ref().ok().map(flatten);
    shared.requests.lock().unwrap().push(ReceivedRequest {
        headers,
        spans: spans.as_ref().map(Vec::len),
    });
    let Some(spans) = spans else {
        return (
            StatusCode::BAD_REQUEST,
            "body is not an ExportTraceServiceRequest",
        )
            .into_response();
    };
    shared.spans.lock().unwrap().extend(spans);
    shared.arrived.notify_waiters();
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

fn flatten(request: &ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in &request.resource_spans {
        let resource = resource_spans
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
            out.push(ReceivedSpan {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name.clone(),
                kind: span.kind,
                start_unix_nanos: span.start_time_unix_nano,
                end_unix_nanos: span.end_time_unix_nano,
                attributes: attributes(&span.attributes),
                resource: resource.clone(),
                status_code: span.status.as_ref().map_or(0, |s| s.code),
            });
        }
    }
    out
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, Attr> {
    list.iter()
        .map(|kv| (kv.key.clone(), attr(kv.value.as_ref())))
        .collect()
}

fn attr(value: Option<&AnyValue>) -> Attr {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Attr::Str(s.clone()),
        Some(any_value::Value::IntValue(i)) => Attr::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => Attr::Double(*d),
        Some(any_value::Value::BoolValue(b)) => Attr::Bool(*b),
        _ => Attr::Other,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An endpoint nothing listens on: a port bound for a moment and released.
pub async fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A collector that accepts connections, reads nothing and never answers.
pub struct Blackhole {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Blackhole {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Blackhole { addr, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}
