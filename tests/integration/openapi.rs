//! docs/openapi.yaml and the service agree: every documented route answers,
//! every served route is documented, and the documented shapes and error
//! strings are the ones the service produces.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use macp_auth_service::clients::ceiling::ScopeCeiling;
use macp_auth_service::clients::jwt::JwtFailure;
use macp_auth_service::http::error::ApiError;
use macp_auth_service::http::routes::ROUTES;
use macp_auth_service::keys::{Backend, BackendError, SigningAlg};
use macp_auth_service::mint::RequestError;
use macp_auth_service::mint::scopes::{KnownScopes, ScopeField, ScopeTypeError};
use serde_json::Value;

use crate::support::{config, mint, send, state, state_with};

const HTTP_METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

fn document() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in HTTP_METHODS {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

fn schema<'a>(document: &'a Value, name: &str) -> &'a Value {
    &document["components"]["schemas"][name]
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_document_is_openapi_3_1() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["info"]["title"].is_string());
}

#[test]
fn every_served_route_is_documented_and_nothing_else() {
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(documented_routes(&document()), served);
}

#[tokio::test]
async fn every_documented_route_answers_with_its_documented_methods() {
    let document = document();
    let state = state();
    for (method, path) in documented_routes(&document) {
        let reply = if method == "POST" {
            mint(&state, r#"{"sender":"agent://openapi"}"#).await
        } else {
            send(
                &state,
                Method::from_bytes(method.as_bytes()).unwrap(),
                &path,
                None,
                "",
            )
            .await
        };
        assert_eq!(reply.status, StatusCode::OK, "{method} {path}");
        let documented_statuses = document["paths"][&path][method.to_lowercase()]["responses"]
            .as_object()
            .unwrap();
        assert!(documented_statuses.contains_key("200"), "{method} {path}");

        // A wrong method reveals, through Allow, every method the path serves.
        let reply = send(&state, Method::PATCH, &path, None, "").await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        let mut allowed: Vec<String> = reply.headers["allow"]
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| m != "HEAD")
            .collect();
        allowed.sort();
        let mut documented: Vec<String> = HTTP_METHODS
            .iter()
            .filter(|m| document["paths"][&path].get(**m).is_some())
            .map(|m| m.to_uppercase())
            .collect();
        documented.sort();
        assert_eq!(allowed, documented, "{path}");
        assert!(
            documented_statuses.contains_key("405"),
            "{path} documents its 405"
        );
    }
}

/// Fails to compile when an error variant is added: list it below too.
fn listed(error: &ApiError) {
    match error {
        ApiError::BadRequest(
            RequestError::InvalidJson
            | RequestError::SenderRequired
            | RequestError::ScopesNotObject
            | RequestError::TtlNotPositive
            | RequestError::ScopeType(_),
        )
        | ApiError::UnsupportedMediaType
        | ApiError::PayloadTooLarge
        | ApiError::UnsupportedTransferEncoding
        | ApiError::AmbiguousHost
        | ApiError::NotFound
        | ApiError::MethodNotAllowed
        | ApiError::MissingCredentials
        | ApiError::UnknownCredentials
        | ApiError::InvalidClientToken(_)
        | ApiError::IssuerUnavailable { .. }
        | ApiError::ScopeCeiling(_)
        | ApiError::SenderNotAllowed { .. }
        | ApiError::RateLimited { .. }
        | ApiError::RequestTimeout
        | ApiError::Overloaded
        | ApiError::BackendUnavailable { .. }
        | ApiError::Internal(_) => {}
    }
}

#[test]
fn every_documented_error_string_is_one_the_service_sends() {
    let sent: BTreeSet<String> = [
        ApiError::BadRequest(RequestError::InvalidJson),
        ApiError::BadRequest(RequestError::SenderRequired),
        ApiError::BadRequest(RequestError::ScopesNotObject),
        ApiError::BadRequest(RequestError::TtlNotPositive),
        ApiError::UnsupportedMediaType,
        ApiError::PayloadTooLarge,
        ApiError::UnsupportedTransferEncoding,
        ApiError::AmbiguousHost,
        ApiError::NotFound,
        ApiError::MethodNotAllowed,
        ApiError::Overloaded,
        ApiError::MissingCredentials,
        ApiError::UnknownCredentials,
        ApiError::SenderNotAllowed {
            client: "control-plane".into(),
            allowed: "agent://team-a/*".into(),
        },
        ApiError::RateLimited { retry_after: 1 },
        ApiError::RequestTimeout,
        ApiError::BadRequest(RequestError::ScopeType(ScopeTypeError(
            ScopeField::CanStartSessions,
        ))),
        ApiError::BadRequest(RequestError::ScopeType(ScopeTypeError(
            ScopeField::AllowedModes,
        ))),
        ApiError::BadRequest(RequestError::ScopeType(ScopeTypeError(
            ScopeField::MaxOpenSessions,
        ))),
        ApiError::InvalidClientToken(JwtFailure::Expired),
        ApiError::IssuerUnavailable { retry_after: 1 },
        ApiError::BackendUnavailable {
            backend: Backend::AwsKms,
            cause: BackendError::Timeout { millis: 2000 },
        },
        ApiError::ScopeCeiling(
            ScopeCeiling {
                max_open_sessions: Some(5),
                ..ScopeCeiling::default()
            }
            .check("control-plane", &KnownScopes::default())
            .unwrap_err(),
        ),
        ApiError::Internal("any cause"),
    ]
    .iter()
    .inspect(|error| listed(error))
    .map(ToString::to_string)
    .chain([
        "not ready: shutting down".to_owned(),
        "not ready: signing backend unavailable".to_owned(),
    ])
    .collect();
    let mut documented = BTreeSet::new();
    collect_error_examples(&document(), &mut documented);
    assert!(documented.len() >= 8, "examples found: {documented:?}");
    for error in &documented {
        assert!(
            sent.contains(error),
            "documented error {error:?} is never sent"
        );
    }
}

fn collect_error_examples(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "error" && value.is_string() {
                    found.insert(value.as_str().unwrap().to_owned());
                } else {
                    collect_error_examples(value, found);
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_error_examples(item, found)),
        _ => {}
    }
}

#[tokio::test]
async fn responses_have_exactly_the_documented_fields() {
    let document = document();
    let state = state();
    let minted = mint(&state, r#"{"sender":"agent://openapi"}"#).await;
    let fields: BTreeSet<String> = minted.json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(fields, property_names(schema(&document, "MintResponse")));

    let jwk_properties = property_names(schema(&document, "Jwk"));
    for alg in [SigningAlg::Rs256, SigningAlg::Es256] {
        let reply = send(
            &state_with(config(alg)),
            Method::GET,
            "/.well-known/jwks.json",
            None,
            "",
        )
        .await;
        for key in reply.json["keys"].as_array().unwrap() {
            for member in key.as_object().unwrap().keys() {
                assert!(
                    jwk_properties.contains(member),
                    "{alg}: undocumented JWK member {member}"
                );
            }
        }
    }

    let discovery = send(
        &state,
        Method::GET,
        "/.well-known/openid-configuration",
        None,
        "",
    )
    .await;
    let fields: BTreeSet<String> = discovery
        .json
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(fields, property_names(schema(&document, "Discovery")));

    let request_fields = property_names(schema(&document, "MintRequest"));
    assert_eq!(
        request_fields,
        ["scopes", "sender", "ttl_seconds"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}
