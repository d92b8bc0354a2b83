//! The `key=value,key=value` lists of `OTEL_EXPORTER_OTLP_HEADERS` and
//! `OTEL_RESOURCE_ATTRIBUTES`: the W3C Baggage form, values percent-encoded.
//! Kept apart because the rules (what is an entry, what is an escape) are
//! the same for both and easy to get subtly wrong.

/// Parses `key=value,key=value` with percent-encoded values (the W3C Baggage
/// form both header and resource variables use). `None` for an entry that is
/// not of that form.
pub(super) fn pairs(value: &str) -> impl Iterator<Item = Option<(&str, String)>> {
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

    /// What one entry parses to: a pair, or `None` for a malformed entry.
    type Entry = Option<(&'static str, &'static str)>;

    #[test]
    fn entries_are_split_trimmed_and_decoded_and_bad_ones_marked() {
        let cases: &[(&str, &[Entry])] = &[
            ("a=1", &[Some(("a", "1"))]),
            (" a = 1 , b=x%20y,", &[Some(("a", "1")), Some(("b", "x y"))]),
            ("a=%3D%2C", &[Some(("a", "=,"))]),
            ("a=b=c", &[Some(("a", "b=c"))]),
            ("novalue", &[None]),
            ("=v", &[None]),
            ("a=%G1", &[None]),
            ("a=%+1", &[None]),
            ("a=%4", &[None]),
            ("a=%FF", &[None]),
            ("", &[]),
        ];
        for (input, expected) in cases {
            let parsed: Vec<Option<(&str, String)>> = pairs(input).collect();
            let expected: Vec<Option<(&str, String)>> = expected
                .iter()
                .map(|pair| pair.map(|(k, v)| (k, v.to_owned())))
                .collect();
            assert_eq!(parsed, expected, "{input:?}");
        }
    }
}
