//! The writer that keeps every log record on one line to every reader,
//! whatever the values in it. String fields are quoted and escaped by the
//! formatter; on the way out [`Escaping`] replaces every control character
//! left in a record (but its final line feed), U+2028 and U+2029 with a
//! `\uXXXX` escape. JSON allows the line separators and C1 controls raw
//! inside strings (serde_json writes them so), yet JavaScript-era and
//! line-splitting readers break lines on them; in a text record a message
//! holding an operator's value could carry any of them.

use std::borrow::Cow;
use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

/// A writer that keeps every record on one line: see the module docs. The
/// formatter hands over each record in one write, so everything but a
/// record's final line feed is escaped.
#[derive(Clone, Debug)]
pub(crate) struct Escaping<M> {
    /// Where escaped records go.
    pub(crate) inner: M,
    /// Leave ESC alone, for colour codes on a terminal.
    pub(crate) keep_ansi: bool,
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaping<M> {
    type Writer = EscapingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter {
            inner: self.inner.make_writer(),
            keep_ansi: self.keep_ansi,
        }
    }
}

/// One record's writer; see [`Escaping`].
#[derive(Debug)]
pub(crate) struct EscapingWriter<W> {
    inner: W,
    keep_ansi: bool,
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(bytes) {
            Ok(record) => self
                .inner
                .write_all(escape_record(record, self.keep_ansi).as_bytes())?,
            Err(_) => self.inner.write_all(bytes)?,
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `record` with every character that could end a line or hide text
/// escaped as `\uXXXX`, except its final line feed (and ESC, when
/// `keep_ansi`).
pub(crate) fn escape_record(record: &str, keep_ansi: bool) -> Cow<'_, str> {
    let body = record.strip_suffix('\n').unwrap_or(record);
    let escaped = |c: char| {
        (c.is_control() && !(keep_ansi && c == '\u{1b}')) || crate::text::is_line_separator(c)
    };
    if !body.chars().any(escaped) {
        return Cow::Borrowed(record);
    }
    let mut out = String::with_capacity(record.len() + 16);
    for c in body.chars() {
        if escaped(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out.push_str(&record[body.len()..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::memory::MemoryLog;

    #[test]
    fn every_character_that_could_break_a_record_is_escaped_but_its_final_newline() {
        let cases = [
            ("plain record\n", "plain record\n"),
            ("no newline", "no newline"),
            ("a\nb\n", "a\\u000ab\n"),
            ("a\r\n", "a\\u000d\n"),
            ("tab\there\n", "tab\\u0009here\n"),
            ("nel\u{85}x\n", "nel\\u0085x\n"),
            ("c1\u{9b}x\n", "c1\\u009bx\n"),
            ("del\u{7f}x\n", "del\\u007fx\n"),
            ("ls\u{2028}ps\u{2029}\n", "ls\\u2028ps\\u2029\n"),
            ("esc\u{1b}[31m\n", "esc\\u001b[31m\n"),
            (
                "\u{fc}nicode \u{65e5}\u{672c}\n",
                "\u{fc}nicode \u{65e5}\u{672c}\n",
            ),
        ];
        for (record, expected) in cases {
            assert_eq!(escape_record(record, false), expected, "{record:?}");
        }
        assert_eq!(escape_record("\u{1b}[31mred\n", true), "\u{1b}[31mred\n");
    }

    const HOSTILE: &str = "x\u{2028}y\u{2029}z\u{85}w\r\nINFO forged\u{1b}[2J";

    fn captured(json: bool, log: impl FnOnce()) -> String {
        let buffer = MemoryLog::default();
        let writer = Escaping {
            inner: buffer.clone(),
            keep_ansi: false,
        };
        let builder = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false);
        let _guard = if json {
            tracing::subscriber::set_default(builder.json().flatten_event(true).finish())
        } else {
            tracing::subscriber::set_default(builder.finish())
        };
        // Interest is cached per callsite across threads; recompute it now
        // that this thread's subscriber exists.
        tracing::callsite::rebuild_interest_cache();
        log();
        buffer.text()
    }

    #[test]
    fn json_records_stay_one_line_and_keep_their_values() {
        let output = captured(true, || {
            tracing::info!(field = HOSTILE, "message {HOSTILE}");
        });
        assert_eq!(output.lines().count(), 1, "{output:?}");
        assert!(output.ends_with('\n'));
        for raw in ['\u{2028}', '\u{2029}', '\u{85}', '\r', '\u{1b}'] {
            assert!(!output.contains(raw), "{raw:?} in {output:?}");
        }
        let record: serde_json::Value = serde_json::from_str(output.trim_end()).unwrap();
        assert_eq!(record["field"], HOSTILE, "escaped, not altered");
        assert_eq!(record["message"], format!("message {HOSTILE}"));
    }

    #[test]
    fn text_records_stay_one_line_with_string_fields_quoted() {
        let output = captured(false, || {
            tracing::info!(field = HOSTILE, "message {HOSTILE}");
        });
        assert_eq!(output.lines().count(), 1, "{output:?}");
        for raw in ['\u{2028}', '\u{2029}', '\u{85}', '\r', '\u{1b}'] {
            assert!(!output.contains(raw), "{raw:?} in {output:?}");
        }
        assert!(output.contains("field=\"x"), "{output}");
        assert!(output.contains("message x\\u2028y"), "{output}");
    }
}
