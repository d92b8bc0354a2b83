//! Untrusted text: the characters that can forge a log line or mislead a
//! reader, in one place.
//!
//! Operators' values (client names, kids, issuer, audience, sender patterns)
//! and callers' values (senders) end up in log lines, audit records, metric
//! labels and error messages. A line feed in any of them starts a new log
//! record to every line-based reader; a carriage return, a form feed, the
//! Unicode line and paragraph separators and the C1 "next line" do the same
//! to some readers; bidirectional overrides make a value display as something
//! it is not. Operators' values are refused at load when they hold any of
//! these, senders are refused by the pattern matcher, and the log writer
//! escapes whatever reaches it anyway.

/// Whether `c` can break a line or change how the text around it displays:
/// C0 and C1 control characters (DEL included), the Unicode line and
/// paragraph separators, and the bidirectional formatting characters
/// (marks, embeddings, overrides and isolates).
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control() || is_line_separator(c) || is_bidi_control(c)
}

/// U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR (U+0085 NEXT LINE is
/// a C1 control, so `char::is_control` already covers it).
pub(crate) fn is_line_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// The characters that reorder the display of the text around them.
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Whether `text` holds none of the [`is_unsafe`] characters.
pub(crate) fn is_printable(text: &str) -> bool {
    !text.chars().any(is_unsafe)
}

/// `text` with every [`is_unsafe`] character written as `\u{XXXX}`, for
/// values that are shown rather than refused (a key reference in an error
/// line), so the line stays one line and reads as what it holds.
pub(crate) fn escape_unsafe(text: &str) -> std::borrow::Cow<'_, str> {
    if is_printable(text) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The sentence validation errors use for a value that is not printable.
pub(crate) const PRINTABLE_RULE: &str = "must not contain control characters, line or paragraph separators, or bidirectional formatting characters";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breakers_controls_and_bidi_overrides_are_unsafe_and_the_rest_is_not() {
        let unsafe_chars = [
            '\0', '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\u{1B}', '\u{7F}', '\u{80}', '\u{85}',
            '\u{9F}', '\u{2028}', '\u{2029}', '\u{202E}', '\u{2066}', '\u{200F}', '\u{061C}',
        ];
        for c in unsafe_chars {
            assert!(is_unsafe(c), "{:?} is unsafe", c);
            assert!(!is_printable(&format!("name{c}x")), "{:?}", c);
        }
        for text in [
            "control-plane",
            "agent://team-a/risk",
            "ünïcödé ñame",
            "日本",
            "a b",
        ] {
            assert!(is_printable(text), "{text:?} is printable");
        }
    }

    #[test]
    fn unsafe_characters_are_shown_as_escapes_and_the_rest_as_it_is() {
        let cases = [
            ("alias/k", "alias/k"),
            ("a\nINFO forged", "a\\u{000a}INFO forged"),
            ("x\u{202E}y\r", "x\\u{202e}y\\u{000d}"),
            ("ünï", "ünï"),
        ];
        for (text, shown) in cases {
            assert_eq!(escape_unsafe(text), shown, "{text:?}");
        }
    }
}
