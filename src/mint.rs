//! The mint request, the claims it becomes, and the compact JWS around them.
//!
//! Everything here is pure and cheap: validation finishes before any signing
//! work is queued, and the only expensive step (the signature itself) is left
//! to the signing pool. The field rules mirror the reference service, except
//! where the reference is wrong (fractional TTLs, see [`effective_ttl`]).

pub mod scopes;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Number, Value};

/// A validated `POST /tokens` body.
#[derive(Debug, Clone, PartialEq)]
pub struct MintRequest {
    /// The requested subject, exactly as sent (never trimmed).
    pub sender: String,
    /// The scopes object, numbers normalised as JavaScript would print them.
    pub scopes: Map<String, Value>,
    /// The requested lifetime; `None` when absent or null.
    pub ttl_seconds: Option<f64>,
    /// What the audit record should flag about the scopes.
    pub(crate) warning: Option<scopes::ScopeWarning>,
}

/// Why a mint request body is refused. The messages are the wire
/// contract's `error` strings; the HTTP layer answers them with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body does not parse as JSON.
    #[error("invalid JSON body")]
    InvalidJson,
    /// The body is not an object, or `sender` is not a non-blank string.
    #[error("sender is required")]
    SenderRequired,
    /// `scopes` is present but not an object.
    #[error("scopes must be an object")]
    ScopesNotObject,
    /// `ttl_seconds` is present, not null, and not a positive number.
    #[error("ttl_seconds must be a positive number")]
    TtlNotPositive,
    /// A known scope member has a type the runtime would reject.
    #[error(transparent)]
    ScopeType(#[from] scopes::ScopeTypeError),
}

/// Why a token cannot be built from a valid request: server-side failures,
/// whose messages are for the log only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The system random generator failed (no `jti`).
    #[error("system RNG failed")]
    Randomness,
    /// The claims did not serialise.
    #[error("claims did not serialise")]
    Claims,
}

/// Validates a request body against the v1 contract, in the reference's
/// order: JSON, then sender, then scopes, then TTL; then the types of the
/// known scope members (last, so every body the reference refuses gets the
/// reference's error).
pub fn parse_request(body: &[u8]) -> Result<MintRequest, RequestError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| RequestError::InvalidJson)?;
    let Value::Object(mut object) = value else {
        return Err(RequestError::SenderRequired);
    };
    let sender = match object.remove("sender") {
        Some(Value::String(sender)) if !is_js_blank(&sender) => sender,
        _ => return Err(RequestError::SenderRequired),
    };
    let scopes = match object.remove("scopes") {
        None => Map::new(),
        Some(Value::Object(scopes)) => normalize_scopes(scopes),
        Some(_) => return Err(RequestError::ScopesNotObject),
    };
    let ttl_seconds = match object.get("ttl_seconds") {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => match number.as_f64() {
            Some(ttl) if ttl.is_finite() && ttl > 0.0 => Some(ttl),
            _ => return Err(RequestError::TtlNotPositive),
        },
        Some(_) => return Err(RequestError::TtlNotPositive),
    };
    let warning = scopes::known_scopes(&scopes)
        .map_err(RequestError::ScopeType)?
        .warning();
    Ok(MintRequest {
        sender,
        scopes,
        ttl_seconds,
        warning,
    })
}

/// Whether JavaScript's `String.prototype.trim` would leave nothing: its
/// white space is Unicode's except NEL (U+0085), plus the byte-order mark;
/// Rust's `char::is_whitespace` differs on exactly those two.
fn is_js_blank(text: &str) -> bool {
    text.chars()
        .all(|c| (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}')
}

/// The lifetime a token gets: the request's TTL rounded up to whole seconds
/// (or the default when none was asked for), then held to the maximum. The
/// reference signs with the rounded value but reports the raw one; here the
/// reported `expires_in_seconds` and `exp - iat` are the same integer.
pub fn effective_ttl(requested: Option<f64>, default: u64, max: u64) -> u64 {
    match requested {
        None => default.min(max),
        // Compare before converting: f64 → u64 saturates, but being explicit
        // keeps the clamp obviously right for values like 1e300.
        Some(ttl) if ttl >= max as f64 => max,
        Some(ttl) => (ttl.ceil() as u64).clamp(1, max),
    }
}

/// Rewrites integral numbers as integers, recursively, so `3.0` is sent as
/// `3` the way JavaScript's `JSON.stringify` writes it: the runtime reads
/// `max_open_sessions` as `usize` and rejects `3.0`. Nothing else changes:
/// keys keep their order, and empty strings and arrays stay.
pub fn normalize_scopes(scopes: Map<String, Value>) -> Map<String, Value> {
    scopes
        .into_iter()
        .map(|(key, value)| (key, normalize_value(value)))
        .collect()
}

fn normalize_value(value: Value) -> Value {
    match value {
        Value::Number(number) => Value::Number(normalize_number(number)),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize_value).collect()),
        Value::Object(map) => Value::Object(normalize_scopes(map)),
        other => other,
    }
}

fn normalize_number(number: Number) -> Number {
    // Integers parsed as i64/u64 are already what JavaScript prints.
    let Some(float) = number.as_f64().filter(|_| number.is_f64()) else {
        return number;
    };
    // ±2^63 bound: every integral f64 strictly inside fits i64 exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if float.fract() == 0.0 && (-LIMIT..LIMIT).contains(&float) {
        // -0.0 becomes 0, as JavaScript prints it.
        Number::from(float as i64)
    } else if float.fract() == 0.0 && (LIMIT..18_446_744_073_709_551_616.0).contains(&float) {
        Number::from(float as u64)
    } else {
        number
    }
}

/// The JWT claims, in the order the reference service writes them.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    /// The request's scopes object, normalised.
    pub macp_scopes: &'a Map<String, Value>,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds: `iat` + the effective TTL.
    pub exp: u64,
    /// The configured issuer.
    pub iss: &'a str,
    /// The configured audience.
    pub aud: &'a str,
    /// The sender, exactly as requested.
    pub sub: &'a str,
    /// The token's unique id.
    pub jti: &'a str,
}

/// A fresh token id: 128 random bits, base64url (22 characters).
pub fn new_jti() -> Result<String, MintError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| MintError::Randomness)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// `base64url(header) . base64url(claims)`, the bytes that get signed.
pub fn signing_input(
    header_b64: &str,
    claims: &Claims<'_>,
    signature_len: usize,
) -> Result<String, MintError> {
    let payload = serde_json::to_vec(claims).map_err(|_| MintError::Claims)?;
    // Room for the signature too, so `compact_jws` appends without copying.
    let capacity =
        header_b64.len() + 1 + payload.len().div_ceil(3) * 4 + 1 + signature_len.div_ceil(3) * 4;
    let mut input = String::with_capacity(capacity);
    input.push_str(header_b64);
    input.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut input);
    Ok(input)
}

/// Appends the signature to the signing input, completing the compact JWS.
pub fn compact_jws(mut signing_input: String, signature: &[u8]) -> String {
    signing_input.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut signing_input);
    signing_input
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: &str) -> Result<MintRequest, String> {
        parse_request(body.as_bytes()).map_err(|err| err.to_string())
    }

    #[test]
    fn a_minimal_request_gets_empty_scopes_and_the_default_ttl() {
        let request = parse(r#"{"sender":"agent://a"}"#).unwrap();
        assert_eq!(request.sender, "agent://a");
        assert!(request.scopes.is_empty());
        assert_eq!(request.ttl_seconds, None);
    }

    #[test]
    fn the_sender_is_kept_exactly_as_sent() {
        assert_eq!(
            parse(r#"{"sender":"  agent://a \t"}"#).unwrap().sender,
            "  agent://a \t"
        );
    }

    #[test]
    fn bad_requests_get_the_contract_error() {
        let cases = [
            ("", "invalid JSON body"),
            ("{", "invalid JSON body"),
            ("sender=a", "invalid JSON body"),
            (r#"{"sender":"a",}"#, "invalid JSON body"),
            ("[]", "sender is required"),
            ("\"agent://a\"", "sender is required"),
            ("null", "sender is required"),
            ("42", "sender is required"),
            ("{}", "sender is required"),
            (r#"{"sender":null}"#, "sender is required"),
            (r#"{"sender":42}"#, "sender is required"),
            (r#"{"sender":["a"]}"#, "sender is required"),
            (r#"{"sender":""}"#, "sender is required"),
            (r#"{"sender":"   "}"#, "sender is required"),
            (r#"{"sender":"\n\t\u00a0\ufeff"}"#, "sender is required"),
            (
                r#"{"sender":"a","scopes":"all"}"#,
                "scopes must be an object",
            ),
            (r#"{"sender":"a","scopes":[]}"#, "scopes must be an object"),
            (r#"{"sender":"a","scopes":1}"#, "scopes must be an object"),
            (
                r#"{"sender":"a","scopes":true}"#,
                "scopes must be an object",
            ),
            (
                r#"{"sender":"a","scopes":null}"#,
                "scopes must be an object",
            ),
            (
                r#"{"sender":"a","ttl_seconds":0}"#,
                "ttl_seconds must be a positive number",
            ),
            (
                r#"{"sender":"a","ttl_seconds":-1}"#,
                "ttl_seconds must be a positive number",
            ),
            (
                r#"{"sender":"a","ttl_seconds":-0.5}"#,
                "ttl_seconds must be a positive number",
            ),
            (
                r#"{"sender":"a","ttl_seconds":"60"}"#,
                "ttl_seconds must be a positive number",
            ),
            (
                r#"{"sender":"a","ttl_seconds":true}"#,
                "ttl_seconds must be a positive number",
            ),
            (
                r#"{"sender":"a","ttl_seconds":[60]}"#,
                "ttl_seconds must be a positive number",
            ),
            (
                r#"{"sender":"a","ttl_seconds":{}}"#,
                "ttl_seconds must be a positive number",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse(body).unwrap_err(), expected, "body {body:?}");
        }
    }

    #[test]
    fn sender_is_checked_before_scopes_and_scopes_before_ttl() {
        assert_eq!(
            parse(r#"{"scopes":1,"ttl_seconds":0}"#).unwrap_err(),
            "sender is required"
        );
        assert_eq!(
            parse(r#"{"sender":"a","scopes":1,"ttl_seconds":0}"#).unwrap_err(),
            "scopes must be an object"
        );
    }

    #[test]
    fn blankness_follows_javascript_trim() {
        // JavaScript keeps NEL (U+0085) but trims the byte-order mark.
        assert_eq!(parse(r#"{"sender":"\u0085"}"#).unwrap().sender, "\u{85}");
        assert_eq!(
            parse(r#"{"sender":"\ufeff"}"#).unwrap_err(),
            "sender is required"
        );
        assert_eq!(
            parse(r#"{"sender":"\u2028\u3000"}"#).unwrap_err(),
            "sender is required"
        );
    }

    #[test]
    fn the_extreme_integral_floats_become_integers_too() {
        let request = parse(
            r#"{"sender":"a","scopes":{"min":-9223372036854775808.0,"max":18446744073709549568.0}}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&request.scopes).unwrap(),
            r#"{"min":-9223372036854775808,"max":18446744073709549568}"#
        );
    }

    #[test]
    fn decimal_scope_values_survive_exactly() {
        let request = parse(
            r#"{"sender":"a","scopes":{"a":-2.368665254168145e-147,"b":1.6380288722649914e-288,"c":0.1}}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&request.scopes).unwrap(),
            r#"{"a":-2.368665254168145e-147,"b":1.6380288722649914e-288,"c":0.1}"#
        );
    }

    #[test]
    fn a_null_ttl_means_the_default() {
        assert_eq!(
            parse(r#"{"sender":"a","ttl_seconds":null}"#)
                .unwrap()
                .ttl_seconds,
            None
        );
    }

    #[test]
    fn ttls_round_up_then_clamp_to_the_maximum() {
        let cases = [
            (None, 300, 3600, 300),
            (None, 7200, 3600, 3600),
            (Some(600.0), 300, 3600, 600),
            (Some(0.0001), 300, 3600, 1),
            (Some(1.5), 300, 3600, 2),
            (Some(59.000001), 300, 3600, 60),
            (Some(3600.0), 300, 3600, 3600),
            (Some(3599.5), 300, 3600, 3600),
            (Some(999_999.0), 300, 3600, 3600),
            (Some(1e300), 300, 3600, 3600),
            (Some(f64::MIN_POSITIVE), 300, 3600, 1),
        ];
        for (requested, default, max, expected) in cases {
            assert_eq!(
                effective_ttl(requested, default, max),
                expected,
                "{requested:?}"
            );
        }
    }

    #[test]
    fn scopes_are_copied_verbatim_with_integral_numbers_as_integers() {
        let request = parse(
            r#"{"sender":"a","scopes":{
                "zeta": 1, "max_open_sessions": 3.0, "allowed_modes": [], "label": "",
                "is_observer": false, "nested": {"n": [1.0, 2.5, -0.0, 1e2]},
                "big": 1e19, "ratio": 0.25, "none": null, "neg": -4.0
            }}"#,
        )
        .unwrap();
        let text = serde_json::to_string(&request.scopes).unwrap();
        assert_eq!(
            text,
            r#"{"zeta":1,"max_open_sessions":3,"allowed_modes":[],"label":"","is_observer":false,"nested":{"n":[1,2.5,0,100]},"big":10000000000000000000,"ratio":0.25,"none":null,"neg":-4}"#
        );
        let max: usize =
            serde_json::from_value(request.scopes["max_open_sessions"].clone()).unwrap();
        assert_eq!(max, 3);
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_like_json_parse() {
        let request = parse(r#"{"sender":"a","sender":"b"}"#).unwrap();
        assert_eq!(request.sender, "b");
    }

    #[test]
    fn claims_serialise_in_reference_order() {
        let scopes = Map::new();
        let claims = Claims {
            macp_scopes: &scopes,
            iat: 10,
            exp: 20,
            iss: "i",
            aud: "a",
            sub: "s",
            jti: "j",
        };
        assert_eq!(
            serde_json::to_string(&claims).unwrap(),
            r#"{"macp_scopes":{},"iat":10,"exp":20,"iss":"i","aud":"a","sub":"s","jti":"j"}"#
        );
    }

    #[test]
    fn jtis_are_128_bit_and_unique() {
        let a = new_jti().unwrap();
        let b = new_jti().unwrap();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 16);
    }

    fn small_claims(scopes: &Map<String, Value>) -> Claims<'_> {
        Claims {
            macp_scopes: scopes,
            iat: 1,
            exp: 2,
            iss: "i",
            aud: "a",
            sub: "s",
            jti: "j",
        }
    }

    #[test]
    fn the_signing_input_is_header_dot_payload() {
        let scopes = Map::new();
        let claims = small_claims(&scopes);
        let input = signing_input("HEADER", &claims, 64).unwrap();
        let (header, payload) = input.split_once('.').unwrap();
        assert_eq!(header, "HEADER");
        let decoded: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(decoded["sub"], json!("s"));
        assert_eq!(
            compact_jws(input.clone(), &[0xff, 0xfe]),
            format!("{input}.__4")
        );
    }

    #[test]
    fn the_signing_input_has_room_for_its_signature() {
        let scopes = Map::new();
        let claims = small_claims(&scopes);
        for signature_len in [64, 256, 512] {
            let input = signing_input("HEADER", &claims, signature_len).unwrap();
            let capacity = input.capacity();
            let token = compact_jws(input, &vec![7; signature_len]);
            assert_eq!(
                token.capacity(),
                capacity,
                "{signature_len}: no reallocation"
            );
        }
    }
}
