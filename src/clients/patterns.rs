//! Sender patterns: which senders a client may mint for.
//!
//! A pattern is a glob where `*` matches any run of characters, `/`
//! included, so `agent://team-a/*` covers every agent under `team-a` at any
//! depth. Nothing else is special: operators write sender URIs, and a
//! richer syntax would only add ways to grant more than intended.

/// `*` matches any run of characters (including none, including `/`);
/// everything else matches itself.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_any_run_of_characters() {
        let cases = [
            ("agent://team-a/*", "agent://team-a/risk", true),
            ("agent://team-a/*", "agent://team-a/", true),
            ("agent://team-a/*", "agent://team-a/x/y", true),
            ("agent://team-a/*", "agent://team-b/risk", false),
            ("agent://*/risk", "agent://team-a/risk", true),
            ("agent://*/risk", "agent://team-a/risky", false),
            ("*", "", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("**", "anything", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} vs {text}");
        }
    }
}
