//! Trace export settings, read from the standard OpenTelemetry variables.
//!
//! The OpenTelemetry SDK and exporter can read these variables themselves,
//! but they quietly ignore what they cannot use: an unknown sampler becomes
//! `parentbased_always_on`, `gzip` without the feature is dropped, a bad
//! number is skipped with a warning. For an identity provider a trace setting
//! that silently does something else is a surprise in production, so every
//! variable is parsed here, strictly, as a pure function of a lookup closure,
//! and the SDK is then configured explicitly from the result.
//!
//! Header values (`OTEL_EXPORTER_OTLP_HEADERS`) often carry collector
//! credentials. They are held as sensitive `HeaderValue`s, never printed by
//! `Debug`, and no error message quotes them, nor the endpoint (whose query or
//! user part could hold a key).

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

/// Variable names, kept together so errors and docs cannot drift.
pub(crate) mod vars {
    pub const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
    pub const TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
    pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    pub const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    pub const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
    pub const HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
    pub const TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
    pub const TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
    pub const TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
    pub const COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
    pub const TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
    pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    pub const SAMPLER: &str = "OTEL_TRACES_SAMPLER";
    pub const SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    pub const BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
    pub const BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
    pub const BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
}

/// `service.name` when neither `OTEL_SERVICE_NAME` nor the resource names one.
pub(crate) const DEFAULT_SERVICE_NAME: &str = "macp-auth-service";

/// Where and how finished spans are exported.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OtelSettings {
    /// The full OTLP/HTTP traces URL (`…/v1/traces`).
    pub(crate) endpoint: Uri,
    /// Extra request headers for the collector (credentials, tenant).
    pub(crate) headers: ExportHeaders,
    /// Deadline of one export request, connection included.
    pub(crate) timeout: Duration,
    /// The `service.name` resource attribute.
    pub(crate) service_name: String,
    /// Further resource attributes, in the order given.
    pub(crate) resource: Vec<(String, String)>,
    /// Which traces are recorded and exported.
    pub(crate) sampler: SamplerSetting,
    /// Spans waiting for export, at most (further spans are dropped).
    pub(crate) max_queue_size: usize,
    /// Spans per export request, at most.
    pub(crate) max_export_batch_size: usize,
    /// Longest wait before a partial batch is exported.
    pub(crate) schedule_delay: Duration,
}

/// Collector request headers. `Debug` names the headers, never their values.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct ExportHeaders(pub(crate) Vec<(HeaderName, HeaderValue)>);

impl fmt::Debug for ExportHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(name, _)| format!("{name}: [redacted]")))
            .finish()
    }
}

/// The sampler of `OTEL_TRACES_SAMPLER`, with its ratio.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SamplerSetting {
    /// Follow the caller's sampling decision when a `traceparent` carries one.
    pub(crate) parent_based: bool,
    /// The decision for traces this service starts (or every trace, when not
    /// parent based).
    pub(crate) root: RootSampler,
}

/// The decision for a trace without a sampled-or-not parent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    /// Keeps this fraction of trace ids, 0.0 to 1.0.
    TraceIdRatio(f64),
}

/// A trace setting that cannot be used. The message names the variable and
/// never quotes a header value or the endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtelConfigError {
    /// The variable at fault.
    pub variable: &'static str,
    message: String,
}

impl OtelConfigError {
    fn new(variable: &'static str, message: impl Into<String>) -> Self {
        OtelConfigError {
            variable,
            message: message.into(),
        }
    }
}

impl fmt::Display for OtelConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OtelConfigError {}

/// Reads the trace settings from `lookup` (the environment in production, a
/// map in tests). `Ok(None)` means tracing is off: no endpoint is set,
/// `OTEL_TRACES_EXPORTER=none`, or `OTEL_SDK_DISABLED=true`.
pub(crate) fn parse<F>(lookup: F) -> Result<Option<OtelSettings>, OtelConfigError>
where
    F: Fn(&str) -> Option<OsString>,
{
    let get = |name: &'static str| -> Result<Option<String>, OtelConfigError> {
        match lookup(name) {
            None => Ok(None),
            Some(raw) => match raw.into_string() {
                Ok(value) if value.trim().is_empty() => Ok(None),
                Ok(value) => Ok(Some(value)),
                Err(_) => Err(OtelConfigError::new(
                    name,
                    format!("{name} is not valid UTF-8"),
                )),
            },
        }
    };
    // The signal-specific variable wins over the general one, as the
    // OpenTelemetry specification says; errors name the one that was used.
    let either = |specific: &'static str, general: &'static str| {
        Ok::<_, OtelConfigError>(match get(specific)? {
            Some(value) => Some((specific, value)),
            None => get(general)?.map(|value| (general, value)),
        })
    };

    if disabled(get(vars::SDK_DISABLED)?)? || !otlp_exporter(get(vars::TRACES_EXPORTER)?)? {
        return Ok(None);
    }
    let endpoint = match get(vars::TRACES_ENDPOINT)? {
        Some(value) => endpoint(vars::TRACES_ENDPOINT, &value, false)?,
        None => match get(vars::ENDPOINT)? {
            Some(value) => endpoint(vars::ENDPOINT, &value, true)?,
            None if get(vars::TRACES_EXPORTER)?.is_some() => {
                return Err(OtelConfigError::new(
                    vars::TRACES_EXPORTER,
                    format!(
                        "{} is otlp but neither {} nor {} is set",
                        vars::TRACES_EXPORTER,
                        vars::ENDPOINT,
                        vars::TRACES_ENDPOINT
                    ),
                ));
            }
            None => return Ok(None),
        },
    };
    if let Some((name, value)) = either(vars::TRACES_PROTOCOL, vars::PROTOCOL)? {
        protocol(name, &value)?;
    }
    if let Some((name, value)) = either(vars::TRACES_COMPRESSION, vars::COMPRESSION)? {
        compression(name, &value)?;
    }
    let headers = match either(vars::TRACES_HEADERS, vars::HEADERS)? {
        Some((name, value)) => headers(name, &value)?,
        None => ExportHeaders::default(),
    };
    let timeout = match either(vars::TRACES_TIMEOUT, vars::TIMEOUT)? {
        Some((name, value)) => Duration::from_millis(number(name, &value, 1, 120_000)?),
        None => Duration::from_secs(10),
    };
    let resource = match get(vars::RESOURCE_ATTRIBUTES)? {
        Some(value) => resource(&value)?,
        None => Vec::new(),
    };
    let service_name = get(vars::SERVICE_NAME)?
        .map(|name| name.trim().to_owned())
        .or_else(|| resource_value(&resource, "service.name"))
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    let sampler = sampler(get(vars::SAMPLER)?, get(vars::SAMPLER_ARG)?)?;
    let (max_queue_size, max_export_batch_size, schedule_delay) = batching(&get)?;
    Ok(Some(OtelSettings {
        endpoint,
        headers,
        timeout,
        service_name,
        resource,
        sampler,
        max_queue_size,
        max_export_batch_size,
        schedule_delay,
    }))
}

fn disabled(value: Option<String>) -> Result<bool, OtelConfigError> {
    match value.as_deref().map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(OtelConfigError::new(
            vars::SDK_DISABLED,
            format!("{} must be true or false (got {v:?})", vars::SDK_DISABLED),
        )),
    }
}

fn otlp_exporter(value: Option<String>) -> Result<bool, OtelConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("otlp") => Ok(true),
        Some("none") => Ok(false),
        Some(v) => Err(OtelConfigError::new(
            vars::TRACES_EXPORTER,
            format!(
                "{} must be otlp or none (got {v:?}); this build exports OTLP only",
                vars::TRACES_EXPORTER
            ),
        )),
    }
}

/// Checks an endpoint; `general` endpoints get the `/v1/traces` path
/// appended, signal-specific ones are used as they are.
fn endpoint(name: &'static str, value: &str, general: bool) -> Result<Uri, OtelConfigError> {
    let fail = |why: &str| OtelConfigError::new(name, format!("{name} {why}"));
    let uri: Uri = value
        .trim()
        .parse()
        .map_err(|_| fail("is not a URL such as http://otel-collector:4318"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(fail(
                "uses https, which this build does not support: export over http \
                 to a collector on the node or in the cluster",
            ));
        }
        _ => {
            return Err(fail(
                "must be an http:// URL such as http://otel-collector:4318",
            ));
        }
    }
    let authority = uri.authority().ok_or_else(|| fail("has no host"))?;
    if authority.as_str().contains('@') {
        return Err(fail(&format!(
            "must not hold credentials; put them in {}",
            vars::HEADERS
        )));
    }
    if !general {
        return Ok(uri);
    }
    if uri.query().is_some() {
        return Err(fail(&format!(
            "must not have a query; use {} for a full URL",
            vars::TRACES_ENDPOINT
        )));
    }
    let base = uri.path().trim_end_matches('/');
    Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(format!("{base}/v1/traces"))
        .build()
        .map_err(|_| fail("is not a URL such as http://otel-collector:4318"))
}

fn protocol(name: &'static str, value: &str) -> Result<(), OtelConfigError> {
    match value.trim() {
        "http/protobuf" => Ok(()),
        other @ ("grpc" | "http/json") => Err(OtelConfigError::new(
            name,
            format!(
                "{name}={other} is not supported by this build: it exports \
                 http/protobuf only (collector port 4318)"
            ),
        )),
        other => Err(OtelConfigError::new(
            name,
            format!("{name} must be http/protobuf (got {other:?})"),
        )),
    }
}

fn compression(name: &'static str, value: &str) -> Result<(), OtelConfigError> {
    match value.trim() {
        "none" => Ok(()),
        "gzip" => Err(OtelConfigError::new(
            name,
            format!("{name}=gzip is not supported by this build; use none"),
        )),
        other => Err(OtelConfigError::new(
            name,
            format!("{name} must be none (got {other:?})"),
        )),
    }
}

/// Parses `key=value,key=value` with percent-encoded values (the W3C Baggage
/// form both header and resource variables use). `None` for an entry that is
/// not of that form.
fn pairs(value: &str) -> impl Iterator<Item = Option<(&str, String)>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (key, raw) = entry.split_once('=')?;
            let key = key.trim();
            let value = percent_decode(raw.trim())?;
            (!key.is_empty()).then_some((key, value))
        })
}

fn headers(name: &'static str, value: &str) -> Result<ExportHeaders, OtelConfigError> {
    let mut headers = Vec::new();
    for (index, pair) in pairs(value).enumerate() {
        let entry = index + 1;
        // Neither the entry nor its value is quoted: either may be a secret.
        let (key, value) = pair.ok_or_else(|| {
            OtelConfigError::new(
                name,
                format!("{name}: entry {entry} is not key=value (percent-encoded value)"),
            )
        })?;
        let key = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
            OtelConfigError::new(
                name,
                format!("{name}: entry {entry} has no valid header name"),
            )
        })?;
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            OtelConfigError::new(
                name,
                format!("{name}: the value of header {key} is not a valid header value"),
            )
        })?;
        value.set_sensitive(true);
        headers.push((key, value));
    }
    Ok(ExportHeaders(headers))
}

fn resource(value: &str) -> Result<Vec<(String, String)>, OtelConfigError> {
    let name = vars::RESOURCE_ATTRIBUTES;
    pairs(value)
        .enumerate()
        .map(|(index, pair)| {
            pair.map(|(key, value)| (key.to_owned(), value))
                .ok_or_else(|| {
                    OtelConfigError::new(
                        name,
                        format!(
                            "{name}: entry {} is not key=value (percent-encoded value)",
                            index + 1
                        ),
                    )
                })
        })
        .collect()
}

fn resource_value(resource: &[(String, String)], key: &str) -> Option<String> {
    resource
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

fn sampler(name: Option<String>, arg: Option<String>) -> Result<SamplerSetting, OtelConfigError> {
    let name = name
        .as_deref()
        .map(str::trim)
        .unwrap_or("parentbased_always_on");
    let (parent_based, root) = match name {
        "always_on" => (false, RootSampler::AlwaysOn),
        "always_off" => (false, RootSampler::AlwaysOff),
        "traceidratio" => (false, RootSampler::TraceIdRatio(ratio(arg.as_deref())?)),
        "parentbased_always_on" => (true, RootSampler::AlwaysOn),
        "parentbased_always_off" => (true, RootSampler::AlwaysOff),
        "parentbased_traceidratio" => (true, RootSampler::TraceIdRatio(ratio(arg.as_deref())?)),
        other => {
            return Err(OtelConfigError::new(
                vars::SAMPLER,
                format!(
                    "{} must be one of always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off, \
                     parentbased_traceidratio (got {other:?})",
                    vars::SAMPLER
                ),
            ));
        }
    };
    // An argument the sampler ignores is a setting that does nothing: most
    // likely a ratio meant for a ratio sampler that was never selected.
    if arg.is_some() && !matches!(root, RootSampler::TraceIdRatio(_)) {
        return Err(OtelConfigError::new(
            vars::SAMPLER_ARG,
            format!(
                "{} is set but {}={name} takes no argument; \
                 use traceidratio or parentbased_traceidratio for a ratio",
                vars::SAMPLER_ARG,
                vars::SAMPLER
            ),
        ));
    }
    Ok(SamplerSetting { parent_based, root })
}

fn ratio(arg: Option<&str>) -> Result<f64, OtelConfigError> {
    let Some(raw) = arg else { return Ok(1.0) };
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| {
            OtelConfigError::new(
                vars::SAMPLER_ARG,
                format!(
                    "{} must be a ratio from 0 to 1 (got {raw:?})",
                    vars::SAMPLER_ARG
                ),
            )
        })
}

type Lookup<'a> = dyn Fn(&'static str) -> Result<Option<String>, OtelConfigError> + 'a;

fn batching(get: &Lookup<'_>) -> Result<(usize, usize, Duration), OtelConfigError> {
    let queue = match get(vars::BSP_MAX_QUEUE_SIZE)? {
        Some(v) => number(vars::BSP_MAX_QUEUE_SIZE, &v, 1, 1_000_000)?,
        None => 2048,
    };
    let batch = match get(vars::BSP_MAX_EXPORT_BATCH_SIZE)? {
        Some(v) => number(vars::BSP_MAX_EXPORT_BATCH_SIZE, &v, 1, queue)?,
        None => 512.min(queue),
    };
    let delay = match get(vars::BSP_SCHEDULE_DELAY)? {
        Some(v) => number(vars::BSP_SCHEDULE_DELAY, &v, 1, 600_000)?,
        None => 5000,
    };
    Ok((queue as usize, batch as usize, Duration::from_millis(delay)))
}

fn number(name: &'static str, raw: &str, min: u64, max: u64) -> Result<u64, OtelConfigError> {
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            OtelConfigError::new(
                name,
                format!("{name} must be a whole number from {min} to {max} (got {raw:?})"),
            )
        })
}

/// Decodes `%XX` escapes; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Option<OtelSettings>, OtelConfigError> {
        parse(|name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        })
    }

    fn on(pairs: &[(&str, &str)]) -> OtelSettings {
        load(pairs)
            .unwrap_or_else(|err| panic!("{pairs:?} refused: {err}"))
            .unwrap_or_else(|| panic!("{pairs:?} left tracing off"))
    }

    const COLLECTOR: (&str, &str) = (vars::ENDPOINT, "http://collector:4318");

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_set() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("nothing set", &[]),
            ("only a service name", &[(vars::SERVICE_NAME, "x")]),
            ("an empty endpoint", &[(vars::ENDPOINT, "  ")]),
            (
                "the SDK disabled",
                &[COLLECTOR, (vars::SDK_DISABLED, "TRUE")],
            ),
            (
                "the none exporter",
                &[COLLECTOR, (vars::TRACES_EXPORTER, "none")],
            ),
        ];
        for (name, pairs) in cases {
            assert_eq!(load(pairs), Ok(None), "{name}");
        }
    }

    #[test]
    fn an_endpoint_alone_turns_tracing_on_with_the_documented_defaults() {
        let settings = on(&[COLLECTOR]);
        assert_eq!(settings.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(settings.headers, ExportHeaders::default());
        assert_eq!(settings.timeout, Duration::from_secs(10));
        assert_eq!(settings.service_name, DEFAULT_SERVICE_NAME);
        assert!(settings.resource.is_empty());
        let parent_always_on = SamplerSetting {
            parent_based: true,
            root: RootSampler::AlwaysOn,
        };
        assert_eq!(settings.sampler, parent_always_on);
        assert_eq!(settings.max_queue_size, 2048);
        assert_eq!(settings.max_export_batch_size, 512);
        assert_eq!(settings.schedule_delay, Duration::from_secs(5));
    }

    #[test]
    fn endpoints_resolve_as_the_specification_says() {
        let cases: &[(&str, &[(&str, &str)], &str)] = &[
            (
                "a general endpoint gets /v1/traces",
                &[COLLECTOR],
                "http://collector:4318/v1/traces",
            ),
            (
                "a general endpoint with a path keeps it",
                &[(vars::ENDPOINT, "http://gw:80/otlp/")],
                "http://gw:80/otlp/v1/traces",
            ),
            (
                "a traces endpoint is used as it is",
                &[(vars::TRACES_ENDPOINT, "http://c:4318/custom?tenant=a")],
                "http://c:4318/custom?tenant=a",
            ),
            (
                "the traces endpoint wins over the general one",
                &[COLLECTOR, (vars::TRACES_ENDPOINT, "http://other:9/t")],
                "http://other:9/t",
            ),
            (
                "an IPv6 literal works",
                &[(vars::ENDPOINT, "http://[::1]:4318")],
                "http://[::1]:4318/v1/traces",
            ),
        ];
        for (name, pairs, expected) in cases {
            assert_eq!(on(pairs).endpoint, *expected, "{name}");
        }
    }

    #[test]
    fn explicit_choices_of_the_only_supported_options_are_accepted() {
        let pairs = [
            COLLECTOR,
            (vars::PROTOCOL, "http/protobuf"),
            (vars::TRACES_PROTOCOL, "http/protobuf"),
            (vars::COMPRESSION, "none"),
            (vars::TRACES_EXPORTER, "otlp"),
            (vars::SDK_DISABLED, "false"),
        ];
        assert_eq!(on(&pairs).endpoint, "http://collector:4318/v1/traces");
    }

    #[test]
    fn header_values_are_decoded_kept_sensitive_and_never_printed() {
        let settings = on(&[
            COLLECTOR,
            (vars::HEADERS, "api-key=s3cr%3Dt%20value, x-tenant=blue,"),
        ]);
        let headers = &settings.headers.0;
        assert_eq!(headers.len(), 2);
        assert_eq!(headers[0].0, "api-key");
        assert_eq!(headers[0].1, "s3cr=t value");
        assert!(headers.iter().all(|(_, value)| value.is_sensitive()));
        assert_eq!(headers[1].1, "blue");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("s3cr"), "{printed}");
        assert!(printed.contains("api-key: [redacted]"), "{printed}");
    }

    #[test]
    fn traces_headers_replace_the_general_headers() {
        let settings = on(&[
            COLLECTOR,
            (vars::HEADERS, "a=1"),
            (vars::TRACES_HEADERS, "b=2"),
        ]);
        let names: Vec<_> = settings.headers.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn the_service_name_comes_from_its_variable_then_the_resource() {
        let cases: &[(&str, &[(&str, &str)], &str)] = &[
            ("default", &[COLLECTOR], DEFAULT_SERVICE_NAME),
            (
                "from the resource",
                &[COLLECTOR, (vars::RESOURCE_ATTRIBUTES, "service.name=idp")],
                "idp",
            ),
            (
                "the variable wins",
                &[
                    COLLECTOR,
                    (vars::RESOURCE_ATTRIBUTES, "service.name=idp"),
                    (vars::SERVICE_NAME, "auth"),
                ],
                "auth",
            ),
        ];
        for (name, pairs, expected) in cases {
            assert_eq!(on(pairs).service_name, *expected, "{name}");
        }
    }

    #[test]
    fn resource_attributes_are_split_and_percent_decoded() {
        let settings = on(&[
            COLLECTOR,
            (
                vars::RESOURCE_ATTRIBUTES,
                "deployment.environment.name=prod, k8s.namespace.name=macp%2Dauth",
            ),
        ]);
        let expected = [
            ("deployment.environment.name".to_owned(), "prod".to_owned()),
            ("k8s.namespace.name".to_owned(), "macp-auth".to_owned()),
        ];
        assert_eq!(settings.resource, expected);
    }

    #[test]
    fn every_standard_sampler_is_understood() {
        use RootSampler::*;
        let cases: &[(&str, Option<&str>, bool, RootSampler)] = &[
            ("always_on", None, false, AlwaysOn),
            ("always_off", None, false, AlwaysOff),
            ("traceidratio", Some("0.25"), false, TraceIdRatio(0.25)),
            ("traceidratio", None, false, TraceIdRatio(1.0)),
            ("parentbased_always_on", None, true, AlwaysOn),
            ("parentbased_always_off", None, true, AlwaysOff),
            (
                "parentbased_traceidratio",
                Some("0"),
                true,
                TraceIdRatio(0.0),
            ),
        ];
        for (sampler, arg, parent_based, root) in cases {
            let mut pairs = vec![COLLECTOR, (vars::SAMPLER, *sampler)];
            if let Some(arg) = arg {
                pairs.push((vars::SAMPLER_ARG, arg));
            }
            let expected = SamplerSetting {
                parent_based: *parent_based,
                root: *root,
            };
            assert_eq!(on(&pairs).sampler, expected, "{sampler} {arg:?}");
        }
    }

    #[test]
    fn timeouts_and_batching_are_read_in_milliseconds_and_spans() {
        let settings = on(&[
            COLLECTOR,
            (vars::TIMEOUT, "9000"),
            (vars::TRACES_TIMEOUT, "2500"),
            (vars::BSP_MAX_QUEUE_SIZE, "100"),
            (vars::BSP_SCHEDULE_DELAY, "250"),
        ]);
        assert_eq!(settings.timeout, Duration::from_millis(2500));
        assert_eq!(settings.max_queue_size, 100);
        assert_eq!(
            settings.max_export_batch_size, 100,
            "the default batch shrinks to fit the queue"
        );
        assert_eq!(settings.schedule_delay, Duration::from_millis(250));
    }

    /// Settings that must stop startup: the variable blamed, and a text that
    /// must not appear in the message (a secret, or a value never quoted).
    #[test]
    fn unusable_settings_are_refused_naming_the_variable() {
        let cases: &[(&str, &[(&str, &str)], &str, &str)] = &[
            (
                "grpc is not compiled in",
                &[COLLECTOR, (vars::PROTOCOL, "grpc")],
                vars::PROTOCOL,
                "",
            ),
            (
                "grpc for traces alone is not compiled in",
                &[COLLECTOR, (vars::TRACES_PROTOCOL, "grpc")],
                vars::TRACES_PROTOCOL,
                "",
            ),
            (
                "http/json is not compiled in",
                &[COLLECTOR, (vars::PROTOCOL, "http/json")],
                vars::PROTOCOL,
                "",
            ),
            (
                "an unknown protocol",
                &[COLLECTOR, (vars::PROTOCOL, "udp")],
                vars::PROTOCOL,
                "",
            ),
            (
                "gzip is not compiled in",
                &[COLLECTOR, (vars::COMPRESSION, "gzip")],
                vars::COMPRESSION,
                "",
            ),
            (
                "an unknown exporter",
                &[COLLECTOR, (vars::TRACES_EXPORTER, "zipkin")],
                vars::TRACES_EXPORTER,
                "",
            ),
            (
                "otlp without an endpoint",
                &[(vars::TRACES_EXPORTER, "otlp")],
                vars::TRACES_EXPORTER,
                "",
            ),
            (
                "a vague SDK switch",
                &[COLLECTOR, (vars::SDK_DISABLED, "yes")],
                vars::SDK_DISABLED,
                "",
            ),
            (
                "https is not compiled in",
                &[(vars::ENDPOINT, "https://c:4318")],
                vars::ENDPOINT,
                "",
            ),
            (
                "a bare host",
                &[(vars::ENDPOINT, "collector:4318")],
                vars::ENDPOINT,
                "",
            ),
            (
                "not a URL",
                &[(vars::TRACES_ENDPOINT, "http://bad host/")],
                vars::TRACES_ENDPOINT,
                "bad host",
            ),
            (
                "credentials in the endpoint",
                &[(vars::ENDPOINT, "http://user:hunter2@c:4318")],
                vars::ENDPOINT,
                "hunter2",
            ),
            (
                "a query on the general endpoint",
                &[(vars::ENDPOINT, "http://c:4318/?key=hunter2")],
                vars::ENDPOINT,
                "hunter2",
            ),
            (
                "a header without '='",
                &[COLLECTOR, (vars::HEADERS, "Authorization Bearer hunter2")],
                vars::HEADERS,
                "hunter2",
            ),
            (
                "a header value with a line break",
                &[
                    COLLECTOR,
                    (vars::TRACES_HEADERS, "authorization=Bearer%0Ahunter2"),
                ],
                vars::TRACES_HEADERS,
                "hunter2",
            ),
            (
                "a header value with a broken escape",
                &[COLLECTOR, (vars::HEADERS, "api-key=hunter2%G1")],
                vars::HEADERS,
                "hunter2",
            ),
            (
                "a header value with a signed escape",
                &[COLLECTOR, (vars::HEADERS, "api-key=hunter2%+1")],
                vars::HEADERS,
                "hunter2",
            ),
            (
                "a header name with a space",
                &[COLLECTOR, (vars::HEADERS, "api key=hunter2")],
                vars::HEADERS,
                "hunter2",
            ),
            (
                "a resource entry without '='",
                &[COLLECTOR, (vars::RESOURCE_ATTRIBUTES, "a=1,b")],
                vars::RESOURCE_ATTRIBUTES,
                "",
            ),
            (
                "an unknown sampler",
                &[COLLECTOR, (vars::SAMPLER, "xray")],
                vars::SAMPLER,
                "",
            ),
            (
                "a ratio above one",
                &[
                    COLLECTOR,
                    (vars::SAMPLER, "traceidratio"),
                    (vars::SAMPLER_ARG, "1.5"),
                ],
                vars::SAMPLER_ARG,
                "",
            ),
            (
                "a ratio that is not a number",
                &[
                    COLLECTOR,
                    (vars::SAMPLER, "traceidratio"),
                    (vars::SAMPLER_ARG, "NaN"),
                ],
                vars::SAMPLER_ARG,
                "",
            ),
            (
                "a ratio the default sampler would ignore",
                &[COLLECTOR, (vars::SAMPLER_ARG, "0.1")],
                vars::SAMPLER_ARG,
                "",
            ),
            (
                "a zero timeout",
                &[COLLECTOR, (vars::TIMEOUT, "0")],
                vars::TIMEOUT,
                "",
            ),
            (
                "a timeout in seconds",
                &[COLLECTOR, (vars::TRACES_TIMEOUT, "10s")],
                vars::TRACES_TIMEOUT,
                "",
            ),
            (
                "a batch larger than the queue",
                &[
                    COLLECTOR,
                    (vars::BSP_MAX_QUEUE_SIZE, "10"),
                    (vars::BSP_MAX_EXPORT_BATCH_SIZE, "11"),
                ],
                vars::BSP_MAX_EXPORT_BATCH_SIZE,
                "",
            ),
            (
                "an empty queue",
                &[COLLECTOR, (vars::BSP_MAX_QUEUE_SIZE, "0")],
                vars::BSP_MAX_QUEUE_SIZE,
                "",
            ),
        ];
        for (name, pairs, variable, secret) in cases {
            let err = load(pairs).expect_err(name);
            let message = err.to_string();
            assert_eq!(err.variable, *variable, "{name}: {message}");
            assert!(message.contains(variable), "{name}: {message}");
            assert!(!message.contains('\n'), "{name}: one line: {message}");
            if !secret.is_empty() {
                assert!(!message.contains(secret), "{name}: leaks: {message}");
            }
        }
    }

    #[test]
    fn a_value_that_is_not_utf8_is_refused_naming_the_variable() {
        use std::os::unix::ffi::OsStringExt;
        let err = parse(|name| match name {
            vars::ENDPOINT => Some(OsString::from("http://c:4318")),
            vars::SERVICE_NAME => Some(OsString::from_vec(vec![0xff, 0xfe])),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(err.variable, vars::SERVICE_NAME);
        assert_eq!(err.to_string(), "OTEL_SERVICE_NAME is not valid UTF-8");
    }
}
