//! The invariants the fuzz targets check, one entry point per target.
//!
//! This file is shared: the fuzz crate exposes it as
//! `macp_auth_service_fuzz::invariants`, and
//! `tests/integration/fuzz_regressions.rs` includes it with `#[path]` to replay
//! the committed corpus and regressions under plain `cargo test`. It may
//! therefore use only what both see: `macp_auth_service`, `serde_json` and
//! the standard library. Every check panics (with the input's story in the
//! message) when an invariant breaks, which libFuzzer reports as a crash.

use macp_auth_service::keys::KeySource;
use macp_auth_service::keys::SigningAlg;
use macp_auth_service::keys::ring::{KeyRing, KeyStatus, MAX_PUBLISHED_KEYS, RingError};
use macp_auth_service::mint::{effective_ttl, normalize_scopes, parse_request};
use serde_json::{Map, Number, Value};

/// The JWK members that hold private key material.
pub const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

/// Shortest run of a `d` member that must never appear in an error.
pub const SECRET_WINDOW: usize = 16;

/// 2^63: below this magnitude every integral f64 is an exact i64.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// Default and maximum TTL the service ships with.
const DEFAULT_TTL: u64 = 300;
const MAX_TTL: u64 = 3600;

// ---------------------------------------------------------------------------
// key_parser
// ---------------------------------------------------------------------------

/// Input: byte 0 picks the algorithm (bit 0: RS256 or ES256), the key source
/// (bits 1-2) and the maximum TTL the schedule is checked with (bits 3-5);
/// the rest, read as UTF-8 (lossily), is the key text.
pub fn check_key_parser(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let alg = if selector & 1 == 0 {
        SigningAlg::Rs256
    } else {
        SigningAlg::Es256
    };
    let source = match (selector >> 1) & 3 {
        0 => KeySource::Env,
        1 => KeySource::File,
        _ => KeySource::Ephemeral,
    };
    let max_ttl =
        [0, 1, 60, 300, 3600, 86_400, u64::MAX / 2, u64::MAX][usize::from(selector >> 3) & 7];
    let text = String::from_utf8_lossy(rest);
    let secrets = secret_windows(&text);
    let public = PublicText::of(&text);

    match KeyRing::parse(alg, &text, source) {
        Err(err) => assert_no_secret("parse error", &err.to_string(), &secrets, &public),
        Ok(ring) => check_ring(&ring, alg, source, max_ttl, &secrets, &public),
    }
}

fn check_ring(
    ring: &KeyRing,
    alg: SigningAlg,
    source: KeySource,
    max_ttl: u64,
    secrets: &[String],
    public: &PublicText,
) {
    let keys = ring.keys();
    assert!(!keys.is_empty(), "a parsed ring holds at least one key");
    assert_no_secret("ring Debug", &format!("{ring:?}"), secrets, public);
    for (index, ring_key) in keys.iter().enumerate() {
        let key = &ring_key.key;
        assert_eq!(key.alg(), alg, "key {index} has the configured alg");
        assert_eq!(key.source(), source, "key {index} keeps its source");
        assert!(!key.kid().is_empty(), "key {index} has a kid");
        assert!(
            keys[..index]
                .iter()
                .all(|other| other.key.kid() != key.kid()),
            "kids are unique, but {:?} repeats",
            key.kid()
        );
        let jwk = key.public_jwk();
        for member in PRIVATE_MEMBERS {
            assert!(
                !jwk.contains_key(member),
                "the published JWK of key {index} contains private member {member:?}"
            );
        }
        assert_eq!(jwk.get("kid").and_then(Value::as_str), Some(key.kid()));
        assert_eq!(jwk.get("alg").and_then(Value::as_str), Some(alg.as_str()));
        assert_eq!(jwk.get("use").and_then(Value::as_str), Some("sig"));
        let expected_kty = match alg {
            SigningAlg::Rs256 => "RSA",
            SigningAlg::Es256 => "EC",
        };
        assert_eq!(jwk.get("kty").and_then(Value::as_str), Some(expected_kty));
        for (name, value) in jwk {
            if name != "kid" {
                let text = value.as_str().unwrap_or_default();
                assert_no_secret("published JWK", text, secrets, public);
            }
        }
        assert_no_secret("key Debug", &format!("{key:?}"), secrets, public);
    }

    // Every instant where the schedule can change, and either side of it.
    let mut instants = vec![0, 1, 1_795_392_000, u64::MAX - 1, u64::MAX];
    for ring_key in keys.iter().take(16) {
        let at = ring_key.activate_at.unwrap_or(0);
        let retire = at.saturating_add(max_ttl).saturating_add(60);
        for instant in [at, retire] {
            instants.extend([
                instant.saturating_sub(1),
                instant,
                instant.saturating_add(1),
            ]);
        }
    }
    instants.sort_unstable();
    instants.dedup();
    for now in instants {
        check_schedule(ring, now, max_ttl, secrets, public);
    }
}

fn check_schedule(ring: &KeyRing, now: u64, max_ttl: u64, secrets: &[String], public: &PublicText) {
    let keys = ring.keys();
    let activation = |index: usize| keys[index].activate_at.unwrap_or(0);
    let schedule = ring.schedule(now, max_ttl);

    // Oracle: the latest activation at or before now; ties to the first.
    let mut expected_signing: Option<usize> = None;
    for index in 0..keys.len() {
        if activation(index) <= now
            && expected_signing.is_none_or(|best| activation(index) > activation(best))
        {
            expected_signing = Some(index);
        }
    }
    assert_eq!(schedule.signing, expected_signing, "signing key at {now}");
    assert!(
        schedule.published.windows(2).all(|pair| pair[0] < pair[1]),
        "published keys are in ring order without repeats: {:?}",
        schedule.published
    );
    assert!(schedule.published.iter().all(|index| *index < keys.len()));
    if let Some(signing) = schedule.signing {
        assert!(
            schedule.published.contains(&signing),
            "the signing key {signing} is published at {now}"
        );
    }
    for index in 0..keys.len() {
        let published = schedule.published.contains(&index);
        match ring.retirement(index, max_ttl) {
            Some(retire_at) => assert_eq!(published, retire_at > now, "key {index} at {now}"),
            None => assert!(published, "key {index} with no successor stays published"),
        }
        if activation(index) > now {
            assert!(published, "pending key {index} is published before {now}");
        }
    }
    let expected_next_activation = (0..keys.len()).map(activation).filter(|at| *at > now).min();
    assert_eq!(schedule.next_activation, expected_next_activation);
    if let Some(retirement) = schedule.next_retirement {
        assert!(retirement > now, "the next retirement is in the future");
    }
    if let Some(change) = schedule.next_change() {
        assert!(change > now, "the next change is in the future");
    }

    match ring.validate(now, max_ttl) {
        Ok(()) => {
            assert!(schedule.signing.is_some());
            assert!(schedule.published.len() <= MAX_PUBLISHED_KEYS);
        }
        Err(err) => {
            match &err {
                RingError::NothingActive(_) => assert!(schedule.signing.is_none()),
                RingError::TooManyKeys(count) => {
                    assert!(schedule.signing.is_some());
                    assert_eq!(*count, schedule.published.len());
                    assert!(*count > MAX_PUBLISHED_KEYS);
                }
                other => panic!("validate returned a parse error: {other:?}"),
            }
            assert_no_secret("validate error", &err.to_string(), secrets, public);
        }
    }

    // `status` recomputes the schedule per key: only for small rings.
    if keys.len() <= 8 {
        for index in 0..keys.len() {
            let status = ring.status(index, now, max_ttl);
            let expected = if schedule.signing == Some(index) {
                KeyStatus::Signing
            } else if !schedule.published.contains(&index) {
                KeyStatus::Retired
            } else if activation(index) > now {
                KeyStatus::Pending
            } else {
                KeyStatus::Superseded
            };
            assert_eq!(status, expected, "status of key {index} at {now}");
        }
    }
}

/// Every [`SECRET_WINDOW`]-character run of base64 characters in a `d`
/// member of the input (the single JWK's, or any JWK Set member's).
pub fn secret_windows(text: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let mut jwks: Vec<&Value> = vec![&value];
    if let Some(members) = value.get("keys").and_then(Value::as_array) {
        jwks.extend(members);
    }
    let mut windows = Vec::new();
    for jwk in jwks {
        let Some(d) = jwk.get("d").and_then(Value::as_str) else {
            continue;
        };
        let chars: Vec<char> = d.chars().collect();
        for window in chars.windows(SECRET_WINDOW) {
            if window.iter().all(|c| is_base64_char(*c)) {
                windows.push(window.iter().collect());
            }
        }
    }
    windows.sort_unstable();
    windows.dedup();
    windows
}

fn is_base64_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/' | '=')
}

/// Text an error may legitimately repeat although it also occurs in `d`:
/// the kids, which name keys in errors and in the JWKS by design.
pub struct PublicText {
    kids: Vec<String>,
}

impl PublicText {
    /// The kids of the input's JWK or JWK Set members, as written and as
    /// `{:?}` quotes them.
    pub fn of(text: &str) -> Self {
        let mut kids = Vec::new();
        if let Ok(value) = serde_json::from_str::<Value>(text) {
            let mut jwks: Vec<&Value> = vec![&value];
            if let Some(members) = value.get("keys").and_then(Value::as_array) {
                jwks.extend(members);
            }
            for jwk in jwks {
                if let Some(kid) = jwk.get("kid").and_then(Value::as_str) {
                    kids.push(format!("{kid:?}"));
                    kids.push(kid.to_owned());
                }
            }
        }
        // Longest first, so a kid inside another kid is removed with it.
        kids.sort_by_key(|kid| std::cmp::Reverse(kid.len()));
        PublicText { kids }
    }
}

/// Panics if `output` (with the kids cut out) holds a run of a `d` member.
pub fn assert_no_secret(what: &str, output: &str, secrets: &[String], public: &PublicText) {
    if secrets.is_empty() {
        return;
    }
    let mut redacted = output.to_owned();
    for kid in &public.kids {
        if !kid.is_empty() {
            redacted = redacted.replace(kid.as_str(), "\u{0}");
        }
    }
    for secret in secrets {
        assert!(
            !redacted.contains(secret.as_str()),
            "{what} leaks {secret:?} from member \"d\": {output:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// mint_request
// ---------------------------------------------------------------------------

/// Input: the raw `POST /tokens` body.
pub fn check_mint_request(body: &[u8]) {
    let result = parse_request(body);
    // An independent reading of the contract, in the documented order.
    let expected = expected_mint_outcome(body);
    match (&result, expected) {
        (Ok(request), Ok(())) => {
            let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
                unreachable!("the oracle accepted only objects");
            };
            assert!(!is_js_blank(&request.sender), "sender is non-blank");
            assert_eq!(
                Some(request.sender.as_str()),
                object.get("sender").and_then(Value::as_str),
                "sender is the JSON's sender exactly"
            );
            let ttl = effective_ttl(request.ttl_seconds, DEFAULT_TTL, MAX_TTL);
            assert!(
                (1..=MAX_TTL).contains(&ttl),
                "effective TTL {ttl} for {:?} is outside 1..={MAX_TTL}",
                request.ttl_seconds
            );
            if let Some(requested) = request.ttl_seconds {
                assert!(requested.is_finite() && requested > 0.0);
                assert!(
                    ttl as f64 >= requested.min(MAX_TTL as f64),
                    "rounded up, not down"
                );
            }
            match object.get("scopes") {
                None => assert!(request.scopes.is_empty()),
                Some(Value::Object(sent)) => check_normalised(sent, &request.scopes),
                Some(other) => panic!("accepted non-object scopes {other:?}"),
            }
        }
        (Err(err), Err(message)) => assert_eq!(err.to_string(), message, "error for the body"),
        (Ok(request), Err(message)) => {
            panic!("accepted a body the contract refuses with {message:?}: {request:?}")
        }
        (Err(err), Ok(())) => panic!("refused a valid body with {:?}", err.to_string()),
    }
}

/// What the v1 contract answers for `body`: Ok for a valid request, or the
/// error message, checked in the documented order.
fn expected_mint_outcome(body: &[u8]) -> Result<(), &'static str> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Err("invalid JSON body");
    };
    let Value::Object(object) = value else {
        return Err("sender is required");
    };
    match object.get("sender") {
        Some(Value::String(sender)) if !is_js_blank(sender) => {}
        _ => return Err("sender is required"),
    }
    match object.get("scopes") {
        None | Some(Value::Object(_)) => {}
        Some(_) => return Err("scopes must be an object"),
    }
    match object.get("ttl_seconds") {
        None | Some(Value::Null) => {}
        Some(Value::Number(ttl)) if ttl.as_f64().is_some_and(|t| t.is_finite() && t > 0.0) => {}
        Some(_) => return Err("ttl_seconds must be a positive number"),
    }
    match object.get("scopes") {
        Some(Value::Object(scopes)) => expected_scope_types(scopes),
        _ => Ok(()),
    }
}

/// The known scope members, typed as the MACP runtime reads them, checked
/// on the scopes as sent: an integral float below 2^64 counts as the
/// integer it will be written as.
fn expected_scope_types(scopes: &Map<String, Value>) -> Result<(), &'static str> {
    let flag = |key| matches!(scopes.get(key), None | Some(Value::Null | Value::Bool(_)));
    if !flag("can_start_sessions") {
        return Err("scopes.can_start_sessions must be a boolean or null");
    }
    if !flag("can_manage_mode_registry") {
        return Err("scopes.can_manage_mode_registry must be a boolean or null");
    }
    if !flag("is_observer") {
        return Err("scopes.is_observer must be a boolean or null");
    }
    match scopes.get("allowed_modes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(modes)) if modes.iter().all(Value::is_string) => {}
        Some(_) => return Err("scopes.allowed_modes must be an array of strings or null"),
    }
    let unsigned = |number: &serde_json::Number| {
        number.as_u64().is_some()
            || number.as_f64().is_some_and(|float| {
                float.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&float)
            })
    };
    match scopes.get("max_open_sessions") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(number)) if unsigned(number) => Ok(()),
        Some(_) => Err(
            "scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null",
        ),
    }
}

/// Blank as JavaScript's `String.prototype.trim` sees it (ECMA-262
/// WhiteSpace and LineTerminator): TAB, VT, FF, ZWNBSP (U+FEFF), every
/// space separator (Zs), LF, CR, LS and PS. Unlike Rust's
/// `char::is_whitespace`, it does not include U+0085 (NEXT LINE).
pub fn is_js_blank(text: &str) -> bool {
    const JS_TRIMMED: [char; 25] = [
        '\u{9}', '\u{a}', '\u{b}', '\u{c}', '\u{d}', '\u{20}', '\u{a0}', '\u{1680}', '\u{2000}',
        '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}', '\u{2007}',
        '\u{2008}', '\u{2009}', '\u{200a}', '\u{2028}', '\u{2029}', '\u{202f}', '\u{205f}',
        '\u{3000}', '\u{feff}',
    ];
    text.chars().all(|c| JS_TRIMMED.contains(&c))
}

// ---------------------------------------------------------------------------
// scopes
// ---------------------------------------------------------------------------

/// Input: a JSON object (used as is), or else bytes decoded by
/// [`scopes_from_bytes`] into a map whose numbers JSON text rarely reaches
/// (raw f64 bit patterns, integral floats near ±2^63 and 2^64).
pub fn check_scopes(data: &[u8]) {
    let scopes = match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(map)) => map,
        _ => scopes_from_bytes(data),
    };
    let normalised = normalize_scopes(scopes.clone());
    check_normalised(&scopes, &normalised);
}

/// The invariants of `normalize_scopes(original) == normalised`.
pub fn check_normalised(original: &Map<String, Value>, normalised: &Map<String, Value>) {
    // Same keys in the same order, same shape, same values.
    same_but_for_number_form(
        &Value::Object(original.clone()),
        &Value::Object(normalised.clone()),
        "$",
    );
    // No integral float below 2^63 in magnitude is left a float.
    no_integral_floats(&Value::Object(normalised.clone()), "$");
    // Idempotent.
    assert_eq!(
        &normalize_scopes(normalised.clone()),
        normalised,
        "normalising twice differs from once"
    );
    // Serialising and re-parsing gives the same value back.
    let text = serde_json::to_string(normalised).expect("a JSON map serialises");
    let reparsed: Value = serde_json::from_str(&text).expect("serialised scopes parse");
    round_trips(&Value::Object(normalised.clone()), &reparsed, &text, "$");
}

fn same_but_for_number_form(original: &Value, normalised: &Value, path: &str) {
    match (original, normalised) {
        (Value::Object(a), Value::Object(b)) => {
            let keys_a: Vec<&String> = a.keys().collect();
            let keys_b: Vec<&String> = b.keys().collect();
            assert_eq!(keys_a, keys_b, "keys (and their order) at {path}");
            for (key, value) in a {
                same_but_for_number_form(value, &b[key], &format!("{path}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "array length at {path}");
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                same_but_for_number_form(x, y, &format!("{path}[{index}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => {
            if a.is_f64() {
                let (x, y) = (
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                );
                assert!(x == y, "number {a} became {b} at {path}");
            } else {
                assert_eq!(a, b, "integer changed at {path}");
            }
        }
        (a, b) => assert_eq!(a, b, "value changed at {path}"),
    }
}

fn no_integral_floats(value: &Value, path: &str) {
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            assert!(
                !(float.fract() == 0.0 && float.abs() < TWO_POW_63),
                "integral {float:?} is still a float at {path}"
            );
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                no_integral_floats(item, &format!("{path}[{index}]"));
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                no_integral_floats(item, &format!("{path}.{key}"));
            }
        }
        _ => {}
    }
}

/// `reparsed` is exactly `value`: the same keys in the same order and the
/// same numbers, bit for bit. (This relies on serde_json's `float_roundtrip`,
/// which the service enables; its default parser can misread the shortest
/// representation of extreme floats by one unit in the last place.)
fn round_trips(value: &Value, reparsed: &Value, text: &str, path: &str) {
    match (value, reparsed) {
        (Value::Object(a), Value::Object(b)) => {
            let keys_a: Vec<&String> = a.keys().collect();
            let keys_b: Vec<&String> = b.keys().collect();
            assert_eq!(keys_a, keys_b, "re-parsed keys at {path} of {text}");
            for (key, item) in a {
                round_trips(item, &b[key], text, &format!("{path}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "re-parsed array at {path} of {text}");
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                round_trips(x, y, text, &format!("{path}[{index}]"));
            }
        }
        (a, b) => assert_eq!(a, b, "{path} does not survive a round trip through {text}"),
    }
}

/// Builds a scopes map from raw bytes, deterministically: a tiny stand-in
/// for `arbitrary` that the integration tests can replay without it.
pub fn scopes_from_bytes(data: &[u8]) -> Map<String, Value> {
    let mut bytes = Bytes(data);
    let mut map = Map::new();
    let count = bytes.byte() % 8;
    for _ in 0..count {
        let key = bytes.string();
        map.insert(key, bytes.value(0));
    }
    map
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((first, rest)) => {
                self.0 = rest;
                *first
            }
            None => 0,
        }
    }

    fn u64(&mut self) -> u64 {
        let mut word = [0u8; 8];
        for slot in &mut word {
            *slot = self.byte();
        }
        u64::from_le_bytes(word)
    }

    fn string(&mut self) -> String {
        let len = usize::from(self.byte() % 16);
        let take = len.min(self.0.len());
        let (text, rest) = self.0.split_at(take);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }

    fn value(&mut self, depth: usize) -> Value {
        const SPECIAL: [f64; 12] = [
            -0.0,
            0.5,
            -1.5,
            4_503_599_627_370_495.5,
            9_007_199_254_740_993.0,
            9_223_372_036_854_774_784.0,
            TWO_POW_63,
            -TWO_POW_63,
            18_446_744_073_709_549_568.0,
            18_446_744_073_709_551_616.0,
            1e300,
            f64::MIN_POSITIVE,
        ];
        let tag = self.byte();
        let container_allowed = depth < 6;
        match tag % 10 {
            0 => Value::Null,
            1 => Value::Bool(tag & 0x10 != 0),
            2 => Value::from(self.u64() as i64),
            3 => Value::from(self.u64()),
            4 => float(f64::from_bits(self.u64())),
            5 => float(self.u64() as i64 as f64),
            6 => float(SPECIAL[usize::from(self.byte()) % SPECIAL.len()]),
            7 => Value::String(self.string()),
            8 if container_allowed => {
                let count = self.byte() % 6;
                Value::Array((0..count).map(|_| self.value(depth + 1)).collect())
            }
            9 if container_allowed => {
                let count = self.byte() % 6;
                let mut map = Map::new();
                for _ in 0..count {
                    let key = self.string();
                    map.insert(key, self.value(depth + 1));
                }
                Value::Object(map)
            }
            _ => Value::Null,
        }
    }
}

/// A JSON float; NaN and infinities (which JSON cannot hold) become null.
fn float(value: f64) -> Value {
    Number::from_f64(value).map_or(Value::Null, Value::Number)
}
