//! The one error type handlers return, and its JSON shape on the wire.
//!
//! Clients match on status codes and `error` strings, so every message here is
//! part of the service's contract. Server-side failures keep their cause for
//! the log and answer with a generic message, so nothing internal (least of all
//! key material) reaches a response.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::keys::{Backend, BackendError};
use crate::mint::{MintError, RequestError};
use crate::signer::SignerError;

/// The request body limit on `POST /tokens`, in bytes.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything a request can fail with. Renders as `{"error": "<message>"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The mint request body is refused (the domain's message, as is).
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    /// The content type is missing or not JSON.
    #[error("content-type must be application/json")]
    UnsupportedMediaType,
    /// The body exceeds [`MAX_BODY_BYTES`].
    #[error("request body exceeds the 64 KiB (65536-byte) limit")]
    PayloadTooLarge,
    /// The body uses a transfer-coding other than `chunked` (such as gzip).
    #[error("transfer-encoding not supported: send the body with Content-Length or chunked only")]
    UnsupportedTransferEncoding,
    /// More than one `Host` header, so the request's authority is ambiguous.
    #[error("invalid request: send exactly one Host header")]
    AmbiguousHost,
    /// No route has this path.
    #[error("not found")]
    NotFound,
    /// The path exists but not with this method; axum adds `Allow`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Minting needs credentials and none were sent.
    #[error("authorization required: send Authorization: Bearer <client secret>")]
    MissingCredentials,
    /// The credentials match no configured client.
    #[error("unknown client credentials")]
    UnknownCredentials,
    /// A workload JWT was refused; the reason is for the audit record only.
    #[error("invalid client token")]
    InvalidClientToken(crate::clients::jwt::JwtFailure),
    /// A workload JWT's issuer keys cannot be had right now.
    #[error(
        "client token cannot be verified now: its issuer's keys are unavailable, retry shortly"
    )]
    IssuerUnavailable {
        /// Seconds until the next fetch attempt.
        retry_after: u64,
    },
    /// The scopes exceed the client's ceiling.
    #[error(transparent)]
    ScopeCeiling(#[from] crate::clients::ceiling::CeilingRefusal),
    /// The client may not mint for this sender.
    #[error("client {client:?} may not mint for this sender (allowed senders: {allowed})")]
    SenderNotAllowed {
        /// The client's name.
        client: String,
        /// Its sender patterns, comma-separated.
        allowed: String,
    },
    /// The client's rate limit is spent.
    #[error("rate limit exceeded: retry after {retry_after} s")]
    RateLimited {
        /// Seconds until a mint is allowed again.
        retry_after: u64,
    },
    /// The request took longer than the request timeout.
    #[error("request timed out")]
    RequestTimeout,
    /// Every signing slot and queue place is taken; retry shortly.
    #[error("the service is at capacity, retry shortly")]
    Overloaded,
    /// The external store holding the signing key (PKCS#11, KMS) failed or
    /// missed the deadline; retry shortly. The cause is logged, never sent.
    #[error("signing backend unavailable, retry shortly")]
    BackendUnavailable {
        /// The store.
        backend: Backend,
        /// What failed (secret-free, but still the operator's business).
        cause: BackendError,
    },
    /// A server-side failure; the cause is logged, never sent.
    #[error("internal server error")]
    Internal(&'static str),
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedTransferEncoding => StatusCode::NOT_IMPLEMENTED,
            ApiError::AmbiguousHost => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::MissingCredentials
            | ApiError::UnknownCredentials
            | ApiError::InvalidClientToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::SenderNotAllowed { .. } | ApiError::ScopeCeiling(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Overloaded
            | ApiError::IssuerUnavailable { .. }
            | ApiError::BackendUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<SignerError> for ApiError {
    /// A full queue asks the client to retry; anything else is a server
    /// failure whose cause is logged, never sent.
    fn from(error: SignerError) -> Self {
        match error {
            SignerError::Overloaded => ApiError::Overloaded,
            SignerError::Stopped => ApiError::Internal("signing threads have stopped"),
            SignerError::Failed => ApiError::Internal("AWS-LC failed to sign"),
            SignerError::Dropped => ApiError::Internal("a signing thread dropped its job"),
            SignerError::Backend { backend, error } => ApiError::BackendUnavailable {
                backend,
                cause: error,
            },
        }
    }
}

impl From<MintError> for ApiError {
    fn from(error: MintError) -> Self {
        match error {
            MintError::Randomness => ApiError::Internal("system RNG failed"),
            MintError::Claims => ApiError::Internal("claims did not serialise"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(cause, "request failed"),
            ApiError::BackendUnavailable { backend, cause } => {
                tracing::warn!(
                    backend = backend.as_str(),
                    "signing backend failed: {cause}"
                );
            }
            _ => {}
        }
        let mut response =
            (self.status(), Json(json!({ "error": self.to_string() }))).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Overloaded | ApiError::BackendUnavailable { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::RateLimited { retry_after } | ApiError::IssuerUnavailable { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            ApiError::InvalidClientToken(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            ApiError::MissingCredentials | ApiError::UnknownCredentials => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn render(error: ApiError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn errors_render_as_json_with_their_status() {
        let (status, headers, body) =
            render(ApiError::BadRequest(RequestError::SenderRequired)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(body, json!({"error": "sender is required"}));
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let (status, _, body) = render(ApiError::Internal("signing pool is gone")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, json!({"error": "internal server error"}));
    }

    #[tokio::test]
    async fn auth_failures_challenge_for_a_bearer_token() {
        for error in [ApiError::MissingCredentials, ApiError::UnknownCredentials] {
            let (status, headers, _) = render(error).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        }
    }

    #[tokio::test]
    async fn refused_client_tokens_get_a_generic_error_and_an_invalid_token_challenge() {
        use crate::clients::jwt::JwtFailure;
        let (status, headers, body) =
            render(ApiError::InvalidClientToken(JwtFailure::Expired)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        assert_eq!(body, json!({"error": "invalid client token"}));
        let (status, headers, _) = render(ApiError::IssuerUnavailable { retry_after: 7 }).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "7");
    }

    #[tokio::test]
    async fn rate_limits_say_when_to_retry() {
        let (status, headers, body) = render(ApiError::RateLimited { retry_after: 3 }).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers[header::RETRY_AFTER], "3");
        assert_eq!(
            body,
            json!({"error": "rate limit exceeded: retry after 3 s"})
        );
    }

    #[test]
    fn signer_errors_map_to_overload_or_an_internal_error_with_their_cause() {
        let cases = [
            (
                SignerError::Overloaded,
                StatusCode::SERVICE_UNAVAILABLE,
                None,
            ),
            (
                SignerError::Stopped,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("signing threads have stopped"),
            ),
            (
                SignerError::Failed,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("AWS-LC failed to sign"),
            ),
            (
                SignerError::Dropped,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("a signing thread dropped its job"),
            ),
        ];
        for (error, status, cause) in cases {
            let api = ApiError::from(error.clone());
            assert_eq!(api.status(), status, "{error:?}");
            match api {
                ApiError::Internal(logged) => assert_eq!(Some(logged), cause),
                other => assert!(cause.is_none(), "{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn overload_asks_clients_to_retry() {
        let (status, headers, _) = render(ApiError::Overloaded).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn a_failing_key_store_asks_clients_to_retry_without_naming_the_cause() {
        let error = ApiError::from(SignerError::Backend {
            backend: Backend::AwsKms,
            error: BackendError::Timeout { millis: 2000 },
        });
        let (status, headers, body) = render(error).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(
            body,
            json!({"error": "signing backend unavailable, retry shortly"})
        );
    }
}
