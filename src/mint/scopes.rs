//! The known scope fields, typed the way the MACP runtime reads them.
//!
//! The runtime (`macp-auth` 0.13.0) deserialises `macp_scopes` into a struct
//! of `Option<bool>`, `Option<Vec<String>>` and `Option<usize>` fields. A
//! token whose known field has any other type verifies, but then fails to
//! deserialise at every stream the agent opens: a failure far from its
//! cause. So the mint refuses such scopes up front with a 400 naming the
//! field, and the reference service (which copies any value) differs here
//! on purpose.
//!
//! The check runs on scopes already normalised by
//! [`normalize_scopes`](super::normalize_scopes), so an integral float like
//! `3.0` has become the integer `3` and passes as `max_open_sessions`.
//! Unknown keys are not looked at: they pass through verbatim, because the
//! runtime ignores them and other consumers may read them. `null` is legal
//! everywhere: the runtime reads it as absent.

use serde_json::{Map, Value};

/// A known scope field, in the order the runtime declares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeField {
    /// `can_start_sessions`: boolean or null; absent means true.
    CanStartSessions,
    /// `can_manage_mode_registry`: boolean or null; absent means false.
    CanManageModeRegistry,
    /// `is_observer`: boolean or null; absent means false.
    IsObserver,
    /// `allowed_modes`: array of strings or null; absent means every mode.
    AllowedModes,
    /// `max_open_sessions`: unsigned 64-bit integer or null; absent means
    /// unlimited.
    MaxOpenSessions,
}

impl ScopeField {
    /// The key in `macp_scopes`.
    pub(crate) fn key(self) -> &'static str {
        match self {
            ScopeField::CanStartSessions => "can_start_sessions",
            ScopeField::CanManageModeRegistry => "can_manage_mode_registry",
            ScopeField::IsObserver => "is_observer",
            ScopeField::AllowedModes => "allowed_modes",
            ScopeField::MaxOpenSessions => "max_open_sessions",
        }
    }

    /// What the field must be, as the 400 error words it.
    pub(crate) fn expected(self) -> &'static str {
        match self {
            ScopeField::CanStartSessions
            | ScopeField::CanManageModeRegistry
            | ScopeField::IsObserver => "a boolean or null",
            ScopeField::AllowedModes => "an array of strings or null",
            ScopeField::MaxOpenSessions => "an integer from 0 to 18446744073709551615 or null",
        }
    }
}

/// A known scope field of the wrong type: answers 400
/// `{"error": "scopes.<field> must be <type>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("scopes.{} must be {}", .0.key(), .0.expected())]
pub struct ScopeTypeError(pub ScopeField);

/// Something legal but worth an operator's attention, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScopeWarning {
    /// `allowed_modes: []`: the runtime will refuse every mode to this token.
    AllowedModesEmpty,
}

impl ScopeWarning {
    /// The value of the audit record's `warning` field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ScopeWarning::AllowedModesEmpty => "allowed_modes_empty",
        }
    }
}

/// The known fields as the runtime will read them; `None` is absent or null.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownScopes<'a> {
    /// `can_start_sessions`.
    pub(crate) can_start_sessions: Option<bool>,
    /// `can_manage_mode_registry`.
    pub(crate) can_manage_mode_registry: Option<bool>,
    /// `is_observer`.
    pub(crate) is_observer: Option<bool>,
    /// `allowed_modes`, borrowed from the scopes.
    pub(crate) allowed_modes: Option<Vec<&'a str>>,
    /// `max_open_sessions`.
    pub(crate) max_open_sessions: Option<u64>,
}

impl KnownScopes<'_> {
    /// What the audit record should flag about these scopes.
    pub(crate) fn warning(&self) -> Option<ScopeWarning> {
        match &self.allowed_modes {
            Some(modes) if modes.is_empty() => Some(ScopeWarning::AllowedModesEmpty),
            _ => None,
        }
    }
}

/// Reads the known fields of normalised scopes, refusing any of the wrong
/// type; the first bad field (in [`ScopeField::ALL`] order) is named.
pub(crate) fn known_scopes(scopes: &Map<String, Value>) -> Result<KnownScopes<'_>, ScopeTypeError> {
    Ok(KnownScopes {
        can_start_sessions: boolean(scopes, ScopeField::CanStartSessions)?,
        can_manage_mode_registry: boolean(scopes, ScopeField::CanManageModeRegistry)?,
        is_observer: boolean(scopes, ScopeField::IsObserver)?,
        allowed_modes: strings(scopes, ScopeField::AllowedModes)?,
        max_open_sessions: unsigned(scopes, ScopeField::MaxOpenSessions)?,
    })
}

fn boolean(scopes: &Map<String, Value>, field: ScopeField) -> Result<Option<bool>, ScopeTypeError> {
    match scopes.get(field.key()) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(ScopeTypeError(field)),
    }
}

fn strings(
    scopes: &Map<String, Value>,
    field: ScopeField,
) -> Result<Option<Vec<&str>>, ScopeTypeError> {
    match scopes.get(field.key()) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or(ScopeTypeError(field)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ScopeTypeError(field)),
    }
}

/// An unsigned 64-bit integer, as the runtime's `usize` on 64-bit targets.
/// Normalisation has already turned integral floats below 2^64 into
/// integers, so any float left here is fractional or out of range.
fn unsigned(scopes: &Map<String, Value>, field: ScopeField) -> Result<Option<u64>, ScopeTypeError> {
    match scopes.get(field.key()) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number.as_u64().map(Some).ok_or(ScopeTypeError(field)),
        Some(_) => Err(ScopeTypeError(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mint::normalize_scopes;
    use serde_json::json;

    fn check(scopes: Value) -> Result<Option<ScopeWarning>, String> {
        let Value::Object(map) = scopes else {
            panic!("scopes must be an object in these tests");
        };
        let map = normalize_scopes(map);
        known_scopes(&map)
            .map(|known| known.warning())
            .map_err(|err| err.to_string())
    }

    #[test]
    fn each_known_field_of_the_wrong_type_is_refused_by_name() {
        let cases = [
            (
                json!({"can_start_sessions": "true"}),
                "scopes.can_start_sessions must be a boolean or null",
            ),
            (
                json!({"can_start_sessions": 1}),
                "scopes.can_start_sessions must be a boolean or null",
            ),
            (
                json!({"can_manage_mode_registry": []}),
                "scopes.can_manage_mode_registry must be a boolean or null",
            ),
            (
                json!({"is_observer": {}}),
                "scopes.is_observer must be a boolean or null",
            ),
            (
                json!({"is_observer": 0}),
                "scopes.is_observer must be a boolean or null",
            ),
            (
                json!({"allowed_modes": "x"}),
                "scopes.allowed_modes must be an array of strings or null",
            ),
            (
                json!({"allowed_modes": ["a", 1]}),
                "scopes.allowed_modes must be an array of strings or null",
            ),
            (
                json!({"allowed_modes": [null]}),
                "scopes.allowed_modes must be an array of strings or null",
            ),
            (
                json!({"allowed_modes": [["a"]]}),
                "scopes.allowed_modes must be an array of strings or null",
            ),
            (
                json!({"allowed_modes": {"a": 1}}),
                "scopes.allowed_modes must be an array of strings or null",
            ),
            (
                json!({"max_open_sessions": -1}),
                "scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null",
            ),
            (
                json!({"max_open_sessions": 2.5}),
                "scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null",
            ),
            (
                json!({"max_open_sessions": 1e20}),
                "scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null",
            ),
            (
                json!({"max_open_sessions": 18446744073709551616.0}),
                "scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null",
            ),
            (
                json!({"max_open_sessions": -3.0}),
                "scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null",
            ),
            (
                json!({"max_open_sessions": "3"}),
                "scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null",
            ),
            (
                json!({"max_open_sessions": true}),
                "scopes.max_open_sessions must be an integer from 0 to 18446744073709551615 or null",
            ),
        ];
        for (scopes, expected) in cases {
            assert_eq!(check(scopes.clone()).unwrap_err(), expected, "{scopes}");
        }
    }

    #[test]
    fn each_known_field_of_the_right_type_passes() {
        let cases = [
            json!({}),
            json!({"can_start_sessions": true, "can_manage_mode_registry": false, "is_observer": true}),
            json!({"can_start_sessions": null, "can_manage_mode_registry": null, "is_observer": null}),
            json!({"allowed_modes": ["macp.mode.decision.v1", ""]}),
            json!({"allowed_modes": null}),
            json!({"max_open_sessions": 0}),
            json!({"max_open_sessions": 3.0}),
            json!({"max_open_sessions": -0.0}),
            json!({"max_open_sessions": 18446744073709551615u64}),
            json!({"max_open_sessions": 18446744073709549568.0}),
            json!({"max_open_sessions": null}),
            json!({"unknown": "anything", "nested": {"is_observer": "not checked"}}),
        ];
        for scopes in cases {
            assert_eq!(check(scopes.clone()), Ok(None), "{scopes}");
        }
    }

    #[test]
    fn the_first_bad_field_in_runtime_order_is_named() {
        assert_eq!(
            check(json!({"max_open_sessions": -1, "can_start_sessions": "x"})).unwrap_err(),
            "scopes.can_start_sessions must be a boolean or null"
        );
    }

    #[test]
    fn an_empty_mode_list_is_legal_but_flagged() {
        assert_eq!(
            check(json!({"allowed_modes": []})),
            Ok(Some(ScopeWarning::AllowedModesEmpty))
        );
        assert_eq!(
            ScopeWarning::AllowedModesEmpty.as_str(),
            "allowed_modes_empty"
        );
    }

    #[test]
    fn known_values_are_read_as_the_runtime_reads_them() {
        let map = normalize_scopes(
            json!({"can_start_sessions": false, "is_observer": null, "allowed_modes": ["a", "b"], "max_open_sessions": 7.0, "x": 1})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(
            known_scopes(&map).unwrap(),
            KnownScopes {
                can_start_sessions: Some(false),
                can_manage_mode_registry: None,
                is_observer: None,
                allowed_modes: Some(vec!["a", "b"]),
                max_open_sessions: Some(7),
            }
        );
    }
}
