//! Sender patterns: which senders a client may mint for.
//!
//! Senders are path-like URIs (`agent://team-a/risk`), and a client is
//! usually granted one subtree. The language is therefore path-aware and
//! deliberately small, so a pattern never grants more than it reads as:
//!
//! - `*` matches any run of characters within one segment: it never crosses
//!   `/` (`agent://team-a/*` covers `agent://team-a/risk`, not
//!   `agent://team-a/x/y`);
//! - `**` matches any run of characters, `/` included (`agent://team-a/**`
//!   covers every sender under `team-a`, at any depth); three or more stars
//!   in a row mean the same as two;
//! - every other character matches itself, case-sensitively. There is no
//!   escape, no `?`, no character class.
//!
//! A sender a pattern must match is refused, whatever the pattern, when one
//! of its `/`-separated segments is `.` or `..` (so
//! `agent://team-a/../team-b/risk` is not under `team-a`), or when it holds
//! a control character, a line or paragraph separator or a bidirectional
//! formatting character (which could make it display as a sender it is
//! not). Patterns holding any of these are refused when the list is loaded.
//!
//! Workload-JWT `subjects` are matched in the same language.

use std::fmt;

use crate::text::is_unsafe;

/// One element of a parsed pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// Matches itself.
    Char(char),
    /// `*`: any run without `/`.
    Segment,
    /// `**`: any run.
    Any,
}

/// A parsed sender pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    tokens: Vec<Token>,
}

/// Why a pattern is refused at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatternError {
    /// The empty pattern.
    Empty,
    /// A control, line-separator or bidirectional formatting character.
    Unprintable,
    /// A `.` or `..` segment, which no accepted sender can have.
    DotSegment,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatternError::Empty => "a pattern must not be empty",
            PatternError::Unprintable => {
                "a pattern must not contain control characters, line or paragraph separators, or bidirectional formatting characters"
            }
            PatternError::DotSegment => {
                "a pattern must not contain \".\" or \"..\" segments (no sender with one is ever accepted)"
            }
        })
    }
}

impl Pattern {
    /// Parses `text`, refusing patterns that could never match anything
    /// accepted or that would mislead whoever reads the list.
    pub(crate) fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.chars().any(is_unsafe) {
            return Err(PatternError::Unprintable);
        }
        if has_dot_segment(text) {
            return Err(PatternError::DotSegment);
        }
        let mut tokens = Vec::with_capacity(text.len());
        for c in text.chars() {
            let token = match (c, tokens.last()) {
                ('*', Some(Token::Segment | Token::Any)) => {
                    tokens.pop();
                    Token::Any
                }
                ('*', _) => Token::Segment,
                (c, _) => Token::Char(c),
            };
            tokens.push(token);
        }
        Ok(Pattern { tokens })
    }

    /// Whether `sender` matches, refusing dot segments and unsafe
    /// characters first.
    pub(crate) fn matches(&self, sender: &str) -> bool {
        if sender.chars().any(is_unsafe) || has_dot_segment(sender) {
            return false;
        }
        let text: Vec<char> = sender.chars().collect();
        // reachable[i]: the tokens so far can match exactly text[..i].
        // One pass per token keeps matching linear in the sender's length
        // for every pattern, with no backtracking.
        let mut reachable = vec![false; text.len() + 1];
        reachable[0] = true;
        for token in &self.tokens {
            match *token {
                Token::Char(c) => {
                    for i in (1..=text.len()).rev() {
                        reachable[i] = reachable[i - 1] && text[i - 1] == c;
                    }
                    reachable[0] = false;
                }
                Token::Segment => {
                    for i in 1..=text.len() {
                        reachable[i] = reachable[i] || (reachable[i - 1] && text[i - 1] != '/');
                    }
                }
                Token::Any => {
                    for i in 1..=text.len() {
                        reachable[i] = reachable[i] || reachable[i - 1];
                    }
                }
            }
        }
        reachable[text.len()]
    }
}

/// Whether `text` matches `pattern`, in the same language (a pattern that
/// does not parse matches nothing). Workload-JWT `subjects` use it.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    Pattern::parse(pattern).is_ok_and(|pattern| pattern.matches(text))
}

/// Whether a `/`-separated segment of `text` is `.` or `..`.
fn has_dot_segment(text: &str) -> bool {
    text.split('/')
        .any(|segment| segment == "." || segment == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_the_documented_language_says() {
        let cases = [
            // `*` stays within one segment.
            ("agent://team-a/*", "agent://team-a/risk", true),
            ("agent://team-a/*", "agent://team-a/", true),
            ("agent://team-a/*", "agent://team-a/x/y", false),
            ("agent://team-a/*", "agent://team-b/risk", false),
            ("agent://*/risk", "agent://team-a/risk", true),
            ("agent://*/risk", "agent://team-a/x/risk", false),
            ("agent://*/risk", "agent://team-a/risky", false),
            ("agent://team-*/risk", "agent://team-a/risk", true),
            ("*", "plain", true),
            ("*", "", true),
            ("*", "agent://team-a/risk", false),
            // `**` crosses segments.
            ("agent://team-a/**", "agent://team-a/x/y", true),
            ("agent://team-a/**", "agent://team-a/", true),
            ("agent://team-a/**", "agent://team-a", false),
            ("**", "agent://anything/at/all", true),
            ("**", "", true),
            ("***", "a/b/c", true),
            ("agent://**/risk", "agent://a/b/risk", true),
            ("agent://**/risk", "agent://a/b/risky", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b*c", "ax/xbyyc", false),
            ("a**c", "ax/xbyyc", true),
            // Everything else matches itself.
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("Agent://x", "agent://x", false),
            ("agent://x?", "agent://xy", false),
            // Dot segments never match.
            ("agent://team-a/**", "agent://team-a/../team-b/risk", false),
            ("agent://team-a/*/risk", "agent://team-a/../risk", false),
            ("agent://team-a/**", "agent://team-a/./risk", false),
            ("**", "..", false),
            ("agent://team-a/**", "agent://team-a/..risk", true),
            ("agent://team-a/**", "agent://team-a/risk..", true),
            // Control, line-separator and bidi characters never match.
            ("agent://team-a/*", "agent://team-a/ri\nsk", false),
            ("agent://team-a/*", "agent://team-a/risk\r", false),
            ("**", "agent://team-a/\u{202E}ksir", false),
            ("**", "agent://team-a/risk\u{2028}", false),
            ("**", "agent://team-a/risk\u{85}", false),
            ("**", "agent://team-a/\u{2066}risk", false),
        ];
        for (pattern, sender, expected) in cases {
            let parsed = Pattern::parse(pattern).unwrap();
            assert_eq!(
                parsed.matches(sender),
                expected,
                "{pattern:?} vs {sender:?}"
            );
        }
    }

    #[test]
    fn patterns_that_could_mislead_are_refused_at_load() {
        let cases = [
            ("", PatternError::Empty),
            ("agent://team-a/\n*", PatternError::Unprintable),
            ("agent://\u{202E}*", PatternError::Unprintable),
            ("agent://team-a/../*", PatternError::DotSegment),
            ("./*", PatternError::DotSegment),
        ];
        for (pattern, expected) in cases {
            assert_eq!(Pattern::parse(pattern), Err(expected), "{pattern:?}");
        }
    }

    #[test]
    fn a_long_sender_against_many_stars_is_matched_in_linear_passes() {
        let pattern = Pattern::parse(&"*a".repeat(50)).unwrap();
        let sender = "a".repeat(60_000) + "b";
        assert!(!pattern.matches(&sender));
    }
}
