//! The live client list: loaded from the configuration, re-read with the
//! key ring, swapped atomically.
//!
//! A reload counts as a change when the list's text changed or any
//! `jwt.jwks_file` it names did, so an issuer's keys kept in a file follow
//! its rotation without touching the list. The issuer key caches live in
//! one registry for the life of the store, so a reload never forgets keys
//! fetched before.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::jwt::KeyRegistry;
use super::{Client, ClientList, ClientsError};
use crate::config::{Config, KeyMaterial, vars};
use crate::keystore::ReloadCounts;

/// Where the client list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientsSource {
    /// No list: minting is unauthenticated.
    Off,
    /// `MACP_AUTH_CLIENTS_JSON`.
    Env,
    /// `MACP_AUTH_CLIENTS_FILE`, reloaded with the key ring.
    File(PathBuf),
}

/// A client list that could not be loaded; names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadClientsError {
    /// The list is unusable.
    #[error("{variable} {source}")]
    Invalid {
        /// The variable naming the source.
        variable: &'static str,
        /// What is wrong.
        source: ClientsError,
    },
    /// The file cannot be read.
    #[error("MACP_AUTH_CLIENTS_FILE names {path:?}, which cannot be read: {reason}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The live client list.
pub struct ClientStore {
    list: ArcSwap<Option<ClientList>>,
    source: ClientsSource,
    /// The inline list, for re-reading its `jwks_file`s.
    inline: Option<KeyMaterial>,
    registry: KeyRegistry,
    /// The list's text and the contents of its `jwks_file`s, as loaded.
    loaded: Mutex<Option<String>>,
    reloads: ReloadCounts,
}

impl fmt::Debug for ClientStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStore")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl ClientStore {
    /// Loads the list the configuration names (or none).
    pub fn from_config(config: &Config) -> Result<Self, LoadClientsError> {
        let registry = KeyRegistry::default();
        let (text, source, inline) = match (&config.clients_json, &config.clients_file) {
            (Some(json), _) => (
                json.expose().to_owned(),
                ClientsSource::Env,
                Some(json.clone()),
            ),
            (None, Some(path)) => (read(path)?, ClientsSource::File(path.clone()), None),
            (None, None) => return Ok(ClientStore::off()),
        };
        let list = parse_named(&text, source.variable(), &registry)?;
        let loaded = fingerprint(&text, &list);
        Ok(ClientStore {
            list: ArcSwap::from_pointee(Some(list)),
            source,
            inline,
            registry,
            loaded: Mutex::new(Some(loaded)),
            reloads: ReloadCounts::default(),
        })
    }

    /// No authentication.
    pub fn off() -> Self {
        ClientStore {
            list: ArcSwap::from_pointee(None),
            source: ClientsSource::Off,
            inline: None,
            registry: KeyRegistry::default(),
            loaded: Mutex::new(None),
            reloads: ReloadCounts::default(),
        }
    }

    /// The list in force; `None` when authentication is off.
    pub fn current(&self) -> Arc<Option<ClientList>> {
        self.list.load_full()
    }

    /// Where the list comes from.
    pub fn source(&self) -> &ClientsSource {
        &self.source
    }

    /// Reload attempts so far, by result.
    pub fn reloads(&self) -> &ReloadCounts {
        &self.reloads
    }

    /// Re-reads the client file and the `jwks_file`s it names (an inline
    /// list: only its `jwks_file`s); keeps the current list if the new one
    /// is unusable. Returns whether a new list is in place.
    pub fn reload(&self) -> Result<bool, LoadClientsError> {
        let text = match (&self.source, &self.inline) {
            (ClientsSource::File(path), _) => read(path),
            (ClientsSource::Env, Some(inline)) if self.reads_jwks_files() => {
                Ok(inline.expose().to_owned())
            }
            _ => return Ok(false),
        };
        let result = text.and_then(|text| self.reload_text(text));
        self.reloads.record(&result, |swapped| *swapped);
        result
    }

    fn reads_jwks_files(&self) -> bool {
        self.current()
            .as_ref()
            .as_ref()
            .is_some_and(|list| !list.jwks_files().is_empty())
    }

    fn reload_text(&self, text: String) -> Result<bool, LoadClientsError> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let current = self.current();
        if let Some(list) = current.as_ref()
            && loaded.as_deref() == Some(fingerprint(&text, list).as_str())
        {
            return Ok(false);
        }
        let list = parse_named(&text, self.source.variable(), &self.registry)?;
        let names: Vec<&str> = list.clients().iter().map(Client::name).collect();
        match &self.source {
            ClientsSource::File(path) => {
                tracing::info!(clients = %names.join(","), "client list reloaded from {}", path.display());
            }
            _ => {
                tracing::info!(clients = %names.join(","), "client list reloaded (jwks_file changed)")
            }
        }
        *loaded = Some(fingerprint(&text, &list));
        self.list.store(Arc::new(Some(list)));
        Ok(true)
    }
}

impl ClientsSource {
    fn variable(&self) -> &'static str {
        match self {
            ClientsSource::File(_) => vars::CLIENTS_FILE,
            _ => vars::CLIENTS_JSON,
        }
    }
}

/// The list's text followed by the contents of each `jwks_file` it names
/// (a file that cannot be read contributes a marker, so its return counts
/// as a change).
fn fingerprint(text: &str, list: &ClientList) -> String {
    let mut out = text.to_owned();
    for path in list.jwks_files() {
        out.push('\0');
        match std::fs::read_to_string(path) {
            Ok(contents) => out.push_str(&contents),
            Err(_) => out.push_str("\0unreadable"),
        }
    }
    out
}

fn parse_named(
    text: &str,
    variable: &'static str,
    registry: &KeyRegistry,
) -> Result<ClientList, LoadClientsError> {
    ClientList::parse_with(text, registry)
        .map_err(|source| LoadClientsError::Invalid { variable, source })
}

fn read(path: &Path) -> Result<String, LoadClientsError> {
    std::fs::read_to_string(path).map_err(|err| LoadClientsError::Unreadable {
        path: path.to_owned(),
        reason: err.kind().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::secret_digest_hex;
    use serde_json::json;

    #[test]
    fn reloading_a_client_file_swaps_good_lists_and_keeps_bad_ones_out() {
        let dir = std::env::temp_dir().join(format!("macp-clients-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clients.json");
        let entry = |name: &str, secret: &str| json!({"name": name, "secret_sha256": secret_digest_hex(secret), "senders": ["*"]});
        std::fs::write(&path, json!([entry("a", "one")]).to_string()).unwrap();
        let config = Config {
            clients_file: Some(path.clone()),
            ..Config::default()
        };
        let store = ClientStore::from_config(&config).unwrap();
        assert!(!store.reload().unwrap(), "unchanged");
        std::fs::write(
            &path,
            json!([entry("a", "one"), entry("b", "two")]).to_string(),
        )
        .unwrap();
        assert!(store.reload().unwrap());
        let current = store.current();
        assert_eq!(current.as_ref().as_ref().unwrap().clients().len(), 2);
        std::fs::write(&path, "[").unwrap();
        assert!(store.reload().is_err());
        assert_eq!(
            store.current().as_ref().as_ref().unwrap().clients().len(),
            2,
            "kept"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_changed_jwks_file_reloads_an_unchanged_list() {
        let dir = std::env::temp_dir().join(format!("macp-clients-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks = dir.join("jwks.json");
        let key = |kid: &str| json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        std::fs::write(&jwks, json!({"keys": [key("a")]}).to_string()).unwrap();
        let inline = json!([{"name": "k8s", "jwt": {"issuer": "https://k", "audiences": ["x"], "subjects": ["*"], "jwks_file": jwks}, "senders": ["*"]}]);
        let mut config = Config::default();
        config.clients_json = Some(KeyMaterial::new(inline.to_string()));
        let store = ClientStore::from_config(&config).unwrap();
        assert!(!store.reload().unwrap(), "nothing changed");
        std::fs::write(&jwks, json!({"keys": [key("a"), key("b")]}).to_string()).unwrap();
        assert!(store.reload().unwrap(), "the key file changed");
        std::fs::write(&jwks, "{").unwrap();
        assert!(store.reload().is_err(), "a broken key file is refused");
        assert_eq!(
            store.current().as_ref().as_ref().unwrap().clients().len(),
            1,
            "kept"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
