//! Per-client scope ceilings: what one minting client may grant.
//!
//! An authenticated client could otherwise put any scopes in a token, so a
//! compromised orchestrator could mint `can_manage_mode_registry: true` for
//! every agent. A ceiling in the client entry caps that, the way STS
//! conditions or Vault role templates cap their callers.
//!
//! A request is judged on what the runtime will *read*, not on what it
//! spells: absent (or null) `can_start_sessions` is true, absent
//! `can_manage_mode_registry` and `is_observer` are false, absent
//! `allowed_modes` is every mode and absent `max_open_sessions` is
//! unlimited. Omitting a field therefore cannot slip past a ceiling. A
//! refusal names the client and the field; scopes are never rewritten to
//! fit, because a token quietly weaker than asked for fails at a distance.

use serde::{Deserialize, Serialize};

use crate::mint::scopes::{KnownScopes, ScopeField};

/// A client's ceiling, as operators write it in the client entry's
/// `"scopes"`. Every field is optional; an absent field imposes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeCeiling {
    /// `false` forbids tokens that may start sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_start_sessions: Option<bool>,
    /// `false` forbids tokens that may manage the mode registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_manage_mode_registry: Option<bool>,
    /// `true` requires observer tokens; `false` imposes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_observer: Option<bool>,
    /// Tokens must list their modes, all from this list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_modes: Option<Vec<String>>,
    /// Tokens must set `max_open_sessions`, at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_sessions: Option<u64>,
}

/// A request beyond its client's ceiling: answers 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client {client:?} may not grant scopes.{}: {}", .field.key(), .rule)]
pub struct CeilingRefusal {
    /// The client's name.
    pub(crate) client: String,
    /// The field over the ceiling.
    pub(crate) field: ScopeField,
    /// The rule, in words, with the ceiling's value.
    pub(crate) rule: String,
}

impl ScopeCeiling {
    /// Whether this ceiling imposes anything at all.
    pub(crate) fn is_empty(&self) -> bool {
        *self == ScopeCeiling::default()
    }

    /// Checks the scopes the runtime will read against this ceiling; the
    /// first field over it (in runtime order) is named.
    pub fn check(&self, client: &str, scopes: &KnownScopes<'_>) -> Result<(), CeilingRefusal> {
        match self.first_violation(scopes) {
            None => Ok(()),
            Some((field, rule)) => Err(CeilingRefusal {
                client: client.to_owned(),
                field,
                rule,
            }),
        }
    }

    fn first_violation(&self, scopes: &KnownScopes<'_>) -> Option<(ScopeField, String)> {
        if self.can_start_sessions == Some(false) && scopes.can_start_sessions.unwrap_or(true) {
            return Some((
                ScopeField::CanStartSessions,
                "its ceiling is false, and absent means true".to_owned(),
            ));
        }
        if self.can_manage_mode_registry == Some(false)
            && scopes.can_manage_mode_registry.unwrap_or(false)
        {
            return Some((
                ScopeField::CanManageModeRegistry,
                "its ceiling is false".to_owned(),
            ));
        }
        if self.is_observer == Some(true) && !scopes.is_observer.unwrap_or(false) {
            return Some((
                ScopeField::IsObserver,
                "its ceiling requires true, and absent means false".to_owned(),
            ));
        }
        if let Some(allowed) = &self.allowed_modes {
            let within = scopes
                .allowed_modes
                .as_ref()
                .is_some_and(|modes| modes.iter().all(|mode| allowed.iter().any(|ok| ok == mode)));
            if !within {
                return Some((
                    ScopeField::AllowedModes,
                    format!(
                        "it must list modes, all from its ceiling [{}], and absent means every mode",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        if let Some(ceiling) = self.max_open_sessions
            && scopes.max_open_sessions.is_none_or(|max| max > ceiling)
        {
            return Some((
                ScopeField::MaxOpenSessions,
                format!("it must be set and at most {ceiling}, and absent means unlimited"),
            ));
        }
        None
    }

    /// One line for `check-config`: the fields the ceiling sets.
    pub(crate) fn describe(&self) -> String {
        if self.is_empty() {
            return "none".to_owned();
        }
        serde_json::to_string(self).unwrap_or_else(|_| "unprintable".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mint::scopes::known_scopes;
    use serde_json::{Value, json};

    fn ceiling(value: Value) -> ScopeCeiling {
        serde_json::from_value(value).unwrap()
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn judge(ceiling_json: Value, scopes: Value) -> Result<(), String> {
        let map = scopes.as_object().unwrap().clone();
        let known = known_scopes(&map).unwrap();
        ceiling(ceiling_json)
            .check("cp", &known)
            .map_err(|err| err.to_string())
    }

    /// Scopes over a ceiling, as (name, ceiling, scopes, the field refused).
    const OVER_THE_CEILING: &[(&str, &str, &str, &str)] = &[
        (
            "a false can_start_sessions ceiling refuses a true value",
            r#"{"can_start_sessions": false}"#,
            r#"{"can_start_sessions": true}"#,
            "can_start_sessions",
        ),
        (
            "a false can_start_sessions ceiling refuses an absent value",
            r#"{"can_start_sessions": false}"#,
            r#"{}"#,
            "can_start_sessions",
        ),
        (
            "a false can_start_sessions ceiling refuses a null value",
            r#"{"can_start_sessions": false}"#,
            r#"{"can_start_sessions": null}"#,
            "can_start_sessions",
        ),
        (
            "a false can_manage_mode_registry ceiling refuses a true value",
            r#"{"can_manage_mode_registry": false}"#,
            r#"{"can_manage_mode_registry": true}"#,
            "can_manage_mode_registry",
        ),
        (
            "a true is_observer ceiling refuses a false value",
            r#"{"is_observer": true}"#,
            r#"{"is_observer": false}"#,
            "is_observer",
        ),
        (
            "a true is_observer ceiling refuses an absent value",
            r#"{"is_observer": true}"#,
            r#"{}"#,
            "is_observer",
        ),
        (
            "a mode ceiling refuses an absent mode list",
            r#"{"allowed_modes": ["a"]}"#,
            r#"{}"#,
            "allowed_modes",
        ),
        (
            "a mode ceiling refuses a null mode list",
            r#"{"allowed_modes": ["a"]}"#,
            r#"{"allowed_modes": null}"#,
            "allowed_modes",
        ),
        (
            "a mode ceiling refuses a mode outside it",
            r#"{"allowed_modes": ["a"]}"#,
            r#"{"allowed_modes": ["a", "b"]}"#,
            "allowed_modes",
        ),
        (
            "an empty mode ceiling refuses any mode",
            r#"{"allowed_modes": []}"#,
            r#"{"allowed_modes": ["a"]}"#,
            "allowed_modes",
        ),
        (
            "a session ceiling refuses an absent limit",
            r#"{"max_open_sessions": 5}"#,
            r#"{}"#,
            "max_open_sessions",
        ),
        (
            "a session ceiling refuses a null limit",
            r#"{"max_open_sessions": 5}"#,
            r#"{"max_open_sessions": null}"#,
            "max_open_sessions",
        ),
        (
            "a session ceiling refuses a higher limit",
            r#"{"max_open_sessions": 5}"#,
            r#"{"max_open_sessions": 6}"#,
            "max_open_sessions",
        ),
    ];

    #[test]
    fn every_rule_refuses_what_is_over_the_ceiling() {
        for &(name, ceiling_json, scopes, field) in OVER_THE_CEILING {
            let err = judge(parse(ceiling_json), parse(scopes)).expect_err(name);
            assert!(
                err.starts_with(&format!("client \"cp\" may not grant scopes.{field}: ")),
                "{name}: {err}"
            );
        }
    }

    /// Scopes within a ceiling, as (name, ceiling, scopes).
    const WITHIN_THE_CEILING: &[(&str, &str, &str)] = &[
        (
            "a false can_start_sessions ceiling passes a false value",
            r#"{"can_start_sessions": false}"#,
            r#"{"can_start_sessions": false}"#,
        ),
        (
            "a true can_start_sessions ceiling imposes nothing",
            r#"{"can_start_sessions": true}"#,
            r#"{}"#,
        ),
        (
            "a false can_manage_mode_registry ceiling passes an absent value",
            r#"{"can_manage_mode_registry": false}"#,
            r#"{}"#,
        ),
        (
            "a false can_manage_mode_registry ceiling passes a false value",
            r#"{"can_manage_mode_registry": false}"#,
            r#"{"can_manage_mode_registry": false}"#,
        ),
        (
            "a true can_manage_mode_registry ceiling passes a true value",
            r#"{"can_manage_mode_registry": true}"#,
            r#"{"can_manage_mode_registry": true}"#,
        ),
        (
            "a true is_observer ceiling passes an observer token",
            r#"{"is_observer": true}"#,
            r#"{"is_observer": true}"#,
        ),
        (
            "a false is_observer ceiling imposes nothing",
            r#"{"is_observer": false}"#,
            r#"{"is_observer": true}"#,
        ),
        (
            "a mode ceiling passes a subset",
            r#"{"allowed_modes": ["a", "b"]}"#,
            r#"{"allowed_modes": ["b"]}"#,
        ),
        (
            "a mode ceiling passes the empty list",
            r#"{"allowed_modes": ["a"]}"#,
            r#"{"allowed_modes": []}"#,
        ),
        (
            "a session ceiling passes an equal limit",
            r#"{"max_open_sessions": 5}"#,
            r#"{"max_open_sessions": 5}"#,
        ),
        (
            "a session ceiling passes a lower limit",
            r#"{"max_open_sessions": 5}"#,
            r#"{"max_open_sessions": 0}"#,
        ),
        (
            "no ceiling passes anything",
            r#"{}"#,
            r#"{"can_manage_mode_registry": true, "max_open_sessions": 18446744073709551615}"#,
        ),
    ];

    #[test]
    fn every_rule_passes_what_is_within_the_ceiling() {
        for &(name, ceiling_json, scopes) in WITHIN_THE_CEILING {
            assert_eq!(judge(parse(ceiling_json), parse(scopes)), Ok(()), "{name}");
        }
    }

    #[test]
    fn a_refusal_names_the_client_the_field_and_the_ceiling() {
        assert_eq!(
            judge(
                json!({"max_open_sessions": 5}),
                json!({"max_open_sessions": 6})
            )
            .unwrap_err(),
            "client \"cp\" may not grant scopes.max_open_sessions: it must be set and at most 5, and absent means unlimited"
        );
        assert_eq!(
            judge(json!({"allowed_modes": ["a", "b"]}), json!({})).unwrap_err(),
            "client \"cp\" may not grant scopes.allowed_modes: it must list modes, all from its ceiling [a, b], and absent means every mode"
        );
    }

    #[test]
    fn ceilings_refuse_unknown_fields_and_describe_themselves() {
        assert!(serde_json::from_value::<ScopeCeiling>(json!({"max_sessions": 1})).is_err());
        assert!(serde_json::from_value::<ScopeCeiling>(json!({"max_open_sessions": -1})).is_err());
        assert_eq!(ScopeCeiling::default().describe(), "none");
        assert_eq!(
            ceiling(json!({"is_observer": true, "max_open_sessions": 2})).describe(),
            r#"{"is_observer":true,"max_open_sessions":2}"#
        );
    }
}
