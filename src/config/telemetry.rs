//! Trace export settings (`TelemetrySettings`), read from the standard
//! OpenTelemetry variables.
//!
//! The OpenTelemetry SDK and exporter can read these variables themselves,
//! but they quietly ignore what they cannot use: an unknown sampler becomes
//! `parentbased_always_on`, `gzip` without the feature is dropped, a bad
//! number is skipped with a warning. For an identity provider a trace setting
//! that silently does something else is a surprise in production, so every
//! variable is parsed here, strictly, and the SDK is then configured
//! explicitly from the result (`telemetry::otel`). As the specification
//! says, an empty variable counts as unset, and a signal-specific variable
//! (`OTEL_EXPORTER_OTLP_TRACES_*`) wins over the general one.
//!
//! Header values (`OTEL_EXPORTER_OTLP_HEADERS`) often carry collector
//! credentials. They are held as sensitive `HeaderValue`s, never printed by
//! `Debug`, and no error message quotes them, nor the endpoint (whose query or
//! user part could hold a key).

use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use self::pairs::pairs;
use super::reader::Reader;
use super::{ConfigError, vars};

mod pairs;

/// `service.name` when neither `OTEL_SERVICE_NAME` nor the resource names one.
pub(crate) const DEFAULT_SERVICE_NAME: &str = "macp-auth-service";

/// Telemetry beyond logs.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TelemetrySettings {
    /// OTLP trace export; `None` (the default) when tracing is off.
    pub(crate) traces: Option<TraceSettings>,
}

/// Where and how finished spans are exported.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TraceSettings {
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

impl TraceSettings {
    /// The endpoint as it may be shown: scheme, host and path, without a
    /// query (which could hold a key).
    pub(crate) fn endpoint_for_display(&self) -> String {
        let uri = &self.endpoint;
        format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map_or("", |a| a.as_str()),
            uri.path()
        )
    }

    /// The sampler as `OTEL_TRACES_SAMPLER` names it, with its ratio.
    pub(crate) fn sampler_name(&self) -> String {
        let prefix = if self.sampler.parent_based {
            "parentbased_"
        } else {
            ""
        };
        match self.sampler.root {
            RootSampler::AlwaysOn => format!("{prefix}always_on"),
            RootSampler::AlwaysOff => format!("{prefix}always_off"),
            RootSampler::TraceIdRatio(ratio) => format!("{prefix}traceidratio {ratio}"),
        }
    }
}

/// Collector request headers. `Debug` names the headers, never their values.
#[derive(Clone, Default, PartialEq)]
pub(crate) struct ExportHeaders(pub(crate) Vec<(HeaderName, HeaderValue)>);

impl ExportHeaders {
    /// The header names, for display.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_str()).collect()
    }
}

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
    /// Record and export every trace.
    AlwaysOn,
    /// Record none.
    AlwaysOff,
    /// Keeps this fraction of trace ids, 0.0 to 1.0.
    TraceIdRatio(f64),
}

/// A variable's value, `None` when unset or blank (the OpenTelemetry rule).
fn set(r: &Reader<'_>, name: &'static str) -> Result<Option<String>, ConfigError> {
    Ok(r.raw(name)?.filter(|value| !value.trim().is_empty()))
}

/// The signal-specific variable's value, else the general one's, with the
/// name of the one used (errors name that one).
fn either(
    r: &Reader<'_>,
    specific: &'static str,
    general: &'static str,
) -> Result<Option<(&'static str, String)>, ConfigError> {
    Ok(match set(r, specific)? {
        Some(value) => Some((specific, value)),
        None => set(r, general)?.map(|value| (general, value)),
    })
}

impl TelemetrySettings {
    pub(crate) fn read(r: &Reader<'_>) -> Result<Self, ConfigError> {
        if disabled(set(r, vars::OTEL_SDK_DISABLED)?)?
            || !otlp_exporter(set(r, vars::OTEL_TRACES_EXPORTER)?)?
        {
            return Ok(TelemetrySettings { traces: None });
        }
        let Some(endpoint) = trace_endpoint(r)? else {
            return Ok(TelemetrySettings { traces: None });
        };
        Ok(TelemetrySettings {
            traces: Some(TraceSettings::read(r, endpoint)?),
        })
    }
}

/// The traces URL, `None` when no endpoint is set (tracing off).
fn trace_endpoint(r: &Reader<'_>) -> Result<Option<Uri>, ConfigError> {
    if let Some(value) = set(r, vars::OTEL_TRACES_ENDPOINT)? {
        return endpoint(vars::OTEL_TRACES_ENDPOINT, &value, false).map(Some);
    }
    if let Some(value) = set(r, vars::OTEL_ENDPOINT)? {
        return endpoint(vars::OTEL_ENDPOINT, &value, true).map(Some);
    }
    if set(r, vars::OTEL_TRACES_EXPORTER)?.is_some() {
        return Err(ConfigError::new(
            vars::OTEL_TRACES_EXPORTER,
            format!(
                "{} is otlp but neither {} nor {} is set",
                vars::OTEL_TRACES_EXPORTER,
                vars::OTEL_ENDPOINT,
                vars::OTEL_TRACES_ENDPOINT
            ),
        ));
    }
    Ok(None)
}

impl TraceSettings {
    fn read(r: &Reader<'_>, endpoint: Uri) -> Result<Self, ConfigError> {
        if let Some((name, value)) = either(r, vars::OTEL_TRACES_PROTOCOL, vars::OTEL_PROTOCOL)? {
            protocol(name, &value)?;
        }
        let compression_var = either(r, vars::OTEL_TRACES_COMPRESSION, vars::OTEL_COMPRESSION)?;
        if let Some((name, value)) = compression_var {
            compression(name, &value)?;
        }
        let headers = match either(r, vars::OTEL_TRACES_HEADERS, vars::OTEL_HEADERS)? {
            Some((name, value)) => headers(name, &value)?,
            None => ExportHeaders::default(),
        };
        let timeout = match either(r, vars::OTEL_TRACES_TIMEOUT, vars::OTEL_TIMEOUT)? {
            Some((name, _)) => Duration::from_millis(milliseconds(r, name, 0, 120_000)?),
            None => Duration::from_secs(10),
        };
        let resource = match set(r, vars::OTEL_RESOURCE_ATTRIBUTES)? {
            Some(value) => resource(&value)?,
            None => Vec::new(),
        };
        let service_name = set(r, vars::OTEL_SERVICE_NAME)?
            .map(|name| name.trim().to_owned())
            .or_else(|| resource_value(&resource, "service.name"))
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        let sampler = sampler(set(r, vars::OTEL_SAMPLER)?, set(r, vars::OTEL_SAMPLER_ARG)?)?;
        let max_queue_size = count(r, vars::OTEL_BSP_MAX_QUEUE_SIZE, 2048, 1_000_000)?;
        let max_export_batch_size = count(
            r,
            vars::OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
            512.min(max_queue_size),
            max_queue_size,
        )?;
        let schedule_delay = match set(r, vars::OTEL_BSP_SCHEDULE_DELAY)? {
            Some(_) => milliseconds(r, vars::OTEL_BSP_SCHEDULE_DELAY, 0, 600_000)?,
            None => 5000,
        };
        Ok(TraceSettings {
            endpoint,
            headers,
            timeout,
            service_name,
            resource,
            sampler,
            max_queue_size: max_queue_size as usize,
            max_export_batch_size: max_export_batch_size as usize,
            schedule_delay: Duration::from_millis(schedule_delay),
        })
    }
}

/// Milliseconds from 1 to `max` (`default` when unset or blank).
fn milliseconds(
    r: &Reader<'_>,
    name: &'static str,
    default: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    if set(r, name)?.is_none() {
        return Ok(default);
    }
    let expected = format!("a whole number of milliseconds from 1 to {max}");
    r.integer_in(name, default, 1..=max, &expected)
}

/// A count of spans from 1 to `max` (`default` when unset or blank).
fn count(r: &Reader<'_>, name: &'static str, default: u64, max: u64) -> Result<u64, ConfigError> {
    if set(r, name)?.is_none() {
        return Ok(default);
    }
    r.positive(name, default, max)
}

fn disabled(value: Option<String>) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(ConfigError::new(
            vars::OTEL_SDK_DISABLED,
            format!(
                "{} must be true or false (got {v:?})",
                vars::OTEL_SDK_DISABLED
            ),
        )),
    }
}

fn otlp_exporter(value: Option<String>) -> Result<bool, ConfigError> {
    match value.as_deref().map(str::trim) {
        None | Some("otlp") => Ok(true),
        Some("none") => Ok(false),
        Some(v) => Err(ConfigError::new(
            vars::OTEL_TRACES_EXPORTER,
            format!(
                "{} must be otlp or none (got {v:?}); this build exports OTLP only",
                vars::OTEL_TRACES_EXPORTER
            ),
        )),
    }
}

/// Checks an endpoint; `general` endpoints get the `/v1/traces` path
/// appended, signal-specific ones are used as they are.
fn endpoint(name: &'static str, value: &str, general: bool) -> Result<Uri, ConfigError> {
    let fail = |why: &str| ConfigError::new(name, format!("{name} {why}"));
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
            vars::OTEL_HEADERS
        )));
    }
    if !general {
        return Ok(uri);
    }
    if uri.query().is_some() {
        return Err(fail(&format!(
            "must not have a query; use {} for a full URL",
            vars::OTEL_TRACES_ENDPOINT
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

fn protocol(name: &'static str, value: &str) -> Result<(), ConfigError> {
    match value.trim() {
        "http/protobuf" => Ok(()),
        other @ ("grpc" | "http/json") => Err(ConfigError::new(
            name,
            format!(
                "{name}={other} is not supported by this build: it exports \
                 http/protobuf only (collector port 4318)"
            ),
        )),
        other => Err(ConfigError::new(
            name,
            format!("{name} must be http/protobuf (got {other:?})"),
        )),
    }
}

fn compression(name: &'static str, value: &str) -> Result<(), ConfigError> {
    match value.trim() {
        "none" => Ok(()),
        "gzip" => Err(ConfigError::new(
            name,
            format!("{name}=gzip is not supported by this build; use none"),
        )),
        other => Err(ConfigError::new(
            name,
            format!("{name} must be none (got {other:?})"),
        )),
    }
}

fn headers(name: &'static str, value: &str) -> Result<ExportHeaders, ConfigError> {
    let mut headers = Vec::new();
    for (index, pair) in pairs(value).enumerate() {
        let entry = index + 1;
        // Neither the entry nor its value is quoted: either may be a secret.
        let (key, value) = pair.ok_or_else(|| {
            ConfigError::new(
                name,
                format!("{name}: entry {entry} is not key=value (percent-encoded value)"),
            )
        })?;
        let key = HeaderName::from_bytes(key.as_bytes()).map_err(|_| {
            ConfigError::new(
                name,
                format!("{name}: entry {entry} has no valid header name"),
            )
        })?;
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            ConfigError::new(
                name,
                format!("{name}: the value of header {key} is not a valid header value"),
            )
        })?;
        value.set_sensitive(true);
        headers.push((key, value));
    }
    Ok(ExportHeaders(headers))
}

fn resource(value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let name = vars::OTEL_RESOURCE_ATTRIBUTES;
    pairs(value)
        .enumerate()
        .map(|(index, pair)| {
            pair.map(|(key, value)| (key.to_owned(), value))
                .ok_or_else(|| {
                    ConfigError::new(
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

fn sampler(name: Option<String>, arg: Option<String>) -> Result<SamplerSetting, ConfigError> {
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
            return Err(ConfigError::new(
                vars::OTEL_SAMPLER,
                format!(
                    "{} must be one of always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off, \
                     parentbased_traceidratio (got {other:?})",
                    vars::OTEL_SAMPLER
                ),
            ));
        }
    };
    // An argument the sampler ignores is a setting that does nothing: most
    // likely a ratio meant for a ratio sampler that was never selected.
    if arg.is_some() && !matches!(root, RootSampler::TraceIdRatio(_)) {
        return Err(ConfigError::new(
            vars::OTEL_SAMPLER_ARG,
            format!(
                "{} is set but {}={name} takes no argument; \
                 use traceidratio or parentbased_traceidratio for a ratio",
                vars::OTEL_SAMPLER_ARG,
                vars::OTEL_SAMPLER
            ),
        ));
    }
    Ok(SamplerSetting { parent_based, root })
}

fn ratio(arg: Option<&str>) -> Result<f64, ConfigError> {
    let Some(raw) = arg else { return Ok(1.0) };
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| {
            ConfigError::new(
                vars::OTEL_SAMPLER_ARG,
                format!(
                    "{} must be a ratio from 0 to 1 (got {raw:?})",
                    vars::OTEL_SAMPLER_ARG
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Option<TraceSettings>, ConfigError> {
        let lookup = |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        };
        TelemetrySettings::read(&Reader::new(&lookup)).map(|settings| settings.traces)
    }

    fn on(pairs: &[(&str, &str)]) -> TraceSettings {
        load(pairs)
            .unwrap_or_else(|err| panic!("{pairs:?} refused: {err}"))
            .unwrap_or_else(|| panic!("{pairs:?} left tracing off"))
    }

    /// Variables of one case.
    type Env = &'static [(&'static str, &'static str)];

    const COLLECTOR: (&str, &str) = (vars::OTEL_ENDPOINT, "http://collector:4318");

    #[test]
    fn tracing_is_off_unless_an_endpoint_is_set() {
        let cases: &[(&str, Env)] = &[
            ("nothing set", &[]),
            ("only a service name", &[(vars::OTEL_SERVICE_NAME, "x")]),
            ("an empty endpoint", &[(vars::OTEL_ENDPOINT, "  ")]),
            (
                "the SDK disabled",
                &[COLLECTOR, (vars::OTEL_SDK_DISABLED, "TRUE")],
            ),
            (
                "the none exporter",
                &[COLLECTOR, (vars::OTEL_TRACES_EXPORTER, "none")],
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
        let cases: &[(&str, Env, &str)] = &[
            (
                "a general endpoint gets /v1/traces",
                &[COLLECTOR],
                "http://collector:4318/v1/traces",
            ),
            (
                "a general endpoint with a path keeps it",
                &[(vars::OTEL_ENDPOINT, "http://gw:80/otlp/")],
                "http://gw:80/otlp/v1/traces",
            ),
            (
                "a traces endpoint is used as it is",
                &[(vars::OTEL_TRACES_ENDPOINT, "http://c:4318/custom?tenant=a")],
                "http://c:4318/custom?tenant=a",
            ),
            (
                "the traces endpoint wins over the general one",
                &[COLLECTOR, (vars::OTEL_TRACES_ENDPOINT, "http://other:9/t")],
                "http://other:9/t",
            ),
            (
                "an IPv6 literal works",
                &[(vars::OTEL_ENDPOINT, "http://[::1]:4318")],
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
            (vars::OTEL_PROTOCOL, "http/protobuf"),
            (vars::OTEL_TRACES_PROTOCOL, "http/protobuf"),
            (vars::OTEL_COMPRESSION, "none"),
            (vars::OTEL_TRACES_EXPORTER, "otlp"),
            (vars::OTEL_SDK_DISABLED, "false"),
        ];
        assert_eq!(on(&pairs).endpoint, "http://collector:4318/v1/traces");
    }

    #[test]
    fn header_values_are_decoded_kept_sensitive_and_never_printed() {
        let settings = on(&[
            COLLECTOR,
            (
                vars::OTEL_HEADERS,
                "api-key=s3cr%3Dt%20value, x-tenant=blue,",
            ),
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
            (vars::OTEL_HEADERS, "a=1"),
            (vars::OTEL_TRACES_HEADERS, "b=2"),
        ]);
        let names: Vec<_> = settings.headers.0.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["b"]);
    }

    #[test]
    fn the_service_name_comes_from_its_variable_then_the_resource() {
        let cases: &[(&str, Env, &str)] = &[
            ("default", &[COLLECTOR], DEFAULT_SERVICE_NAME),
            (
                "from the resource",
                &[
                    COLLECTOR,
                    (vars::OTEL_RESOURCE_ATTRIBUTES, "service.name=idp"),
                ],
                "idp",
            ),
            (
                "the variable wins",
                &[
                    COLLECTOR,
                    (vars::OTEL_RESOURCE_ATTRIBUTES, "service.name=idp"),
                    (vars::OTEL_SERVICE_NAME, "auth"),
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
                vars::OTEL_RESOURCE_ATTRIBUTES,
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
            let mut pairs = vec![COLLECTOR, (vars::OTEL_SAMPLER, *sampler)];
            if let Some(arg) = arg {
                pairs.push((vars::OTEL_SAMPLER_ARG, arg));
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
            (vars::OTEL_TIMEOUT, "9000"),
            (vars::OTEL_TRACES_TIMEOUT, "2500"),
            (vars::OTEL_BSP_MAX_QUEUE_SIZE, "100"),
            (vars::OTEL_BSP_SCHEDULE_DELAY, "250"),
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
    const REFUSED: &[(&str, Env, &str, &str)] = &[
        (
            "grpc is not compiled in",
            &[COLLECTOR, (vars::OTEL_PROTOCOL, "grpc")],
            vars::OTEL_PROTOCOL,
            "",
        ),
        (
            "grpc for traces alone is not compiled in",
            &[COLLECTOR, (vars::OTEL_TRACES_PROTOCOL, "grpc")],
            vars::OTEL_TRACES_PROTOCOL,
            "",
        ),
        (
            "http/json is not compiled in",
            &[COLLECTOR, (vars::OTEL_PROTOCOL, "http/json")],
            vars::OTEL_PROTOCOL,
            "",
        ),
        (
            "an unknown protocol",
            &[COLLECTOR, (vars::OTEL_PROTOCOL, "udp")],
            vars::OTEL_PROTOCOL,
            "",
        ),
        (
            "gzip is not compiled in",
            &[COLLECTOR, (vars::OTEL_COMPRESSION, "gzip")],
            vars::OTEL_COMPRESSION,
            "",
        ),
        (
            "an unknown exporter",
            &[COLLECTOR, (vars::OTEL_TRACES_EXPORTER, "zipkin")],
            vars::OTEL_TRACES_EXPORTER,
            "",
        ),
        (
            "otlp without an endpoint",
            &[(vars::OTEL_TRACES_EXPORTER, "otlp")],
            vars::OTEL_TRACES_EXPORTER,
            "",
        ),
        (
            "a vague SDK switch",
            &[COLLECTOR, (vars::OTEL_SDK_DISABLED, "yes")],
            vars::OTEL_SDK_DISABLED,
            "",
        ),
        (
            "https is not compiled in",
            &[(vars::OTEL_ENDPOINT, "https://c:4318")],
            vars::OTEL_ENDPOINT,
            "",
        ),
        (
            "a bare host",
            &[(vars::OTEL_ENDPOINT, "collector:4318")],
            vars::OTEL_ENDPOINT,
            "",
        ),
        (
            "not a URL",
            &[(vars::OTEL_TRACES_ENDPOINT, "http://bad host/")],
            vars::OTEL_TRACES_ENDPOINT,
            "bad host",
        ),
        (
            "credentials in the endpoint",
            &[(vars::OTEL_ENDPOINT, "http://user:hunter2@c:4318")],
            vars::OTEL_ENDPOINT,
            "hunter2",
        ),
        (
            "a query on the general endpoint",
            &[(vars::OTEL_ENDPOINT, "http://c:4318/?key=hunter2")],
            vars::OTEL_ENDPOINT,
            "hunter2",
        ),
        (
            "a header without '='",
            &[
                COLLECTOR,
                (vars::OTEL_HEADERS, "Authorization Bearer hunter2"),
            ],
            vars::OTEL_HEADERS,
            "hunter2",
        ),
        (
            "a header value with a line break",
            &[
                COLLECTOR,
                (vars::OTEL_TRACES_HEADERS, "authorization=Bearer%0Ahunter2"),
            ],
            vars::OTEL_TRACES_HEADERS,
            "hunter2",
        ),
        (
            "a header value with a broken escape",
            &[COLLECTOR, (vars::OTEL_HEADERS, "api-key=hunter2%G1")],
            vars::OTEL_HEADERS,
            "hunter2",
        ),
        (
            "a header value with a signed escape",
            &[COLLECTOR, (vars::OTEL_HEADERS, "api-key=hunter2%+1")],
            vars::OTEL_HEADERS,
            "hunter2",
        ),
        (
            "a header name with a space",
            &[COLLECTOR, (vars::OTEL_HEADERS, "api key=hunter2")],
            vars::OTEL_HEADERS,
            "hunter2",
        ),
        (
            "a resource entry without '='",
            &[COLLECTOR, (vars::OTEL_RESOURCE_ATTRIBUTES, "a=1,b")],
            vars::OTEL_RESOURCE_ATTRIBUTES,
            "",
        ),
        (
            "an unknown sampler",
            &[COLLECTOR, (vars::OTEL_SAMPLER, "xray")],
            vars::OTEL_SAMPLER,
            "",
        ),
        (
            "a ratio above one",
            &[
                COLLECTOR,
                (vars::OTEL_SAMPLER, "traceidratio"),
                (vars::OTEL_SAMPLER_ARG, "1.5"),
            ],
            vars::OTEL_SAMPLER_ARG,
            "",
        ),
        (
            "a ratio that is not a number",
            &[
                COLLECTOR,
                (vars::OTEL_SAMPLER, "traceidratio"),
                (vars::OTEL_SAMPLER_ARG, "NaN"),
            ],
            vars::OTEL_SAMPLER_ARG,
            "",
        ),
        (
            "a ratio the default sampler would ignore",
            &[COLLECTOR, (vars::OTEL_SAMPLER_ARG, "0.1")],
            vars::OTEL_SAMPLER_ARG,
            "",
        ),
        (
            "a zero timeout",
            &[COLLECTOR, (vars::OTEL_TIMEOUT, "0")],
            vars::OTEL_TIMEOUT,
            "",
        ),
        (
            "a timeout in seconds",
            &[COLLECTOR, (vars::OTEL_TRACES_TIMEOUT, "10s")],
            vars::OTEL_TRACES_TIMEOUT,
            "",
        ),
        (
            "a batch larger than the queue",
            &[
                COLLECTOR,
                (vars::OTEL_BSP_MAX_QUEUE_SIZE, "10"),
                (vars::OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "11"),
            ],
            vars::OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
            "",
        ),
        (
            "an empty queue",
            &[COLLECTOR, (vars::OTEL_BSP_MAX_QUEUE_SIZE, "0")],
            vars::OTEL_BSP_MAX_QUEUE_SIZE,
            "",
        ),
    ];

    #[test]
    fn unusable_settings_are_refused_naming_the_variable() {
        for (name, pairs, variable, secret) in REFUSED {
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
        let lookup = |name: &str| match name {
            vars::OTEL_ENDPOINT => Some(OsString::from("http://c:4318")),
            vars::OTEL_SERVICE_NAME => Some(OsString::from_vec(vec![0xff, 0xfe])),
            _ => None,
        };
        let err = TelemetrySettings::read(&Reader::new(&lookup)).unwrap_err();
        assert_eq!(err.variable, vars::OTEL_SERVICE_NAME);
        assert_eq!(err.to_string(), "OTEL_SERVICE_NAME is not valid UTF-8");
    }
}
