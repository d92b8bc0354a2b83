//! The live client list: loaded from the configuration, swapped whole on
//! reload, read by every mint with one atomic load.
//!
//! Reloading goes through [`crate::reload`], the same mechanism as the key
//! ring's: an unchanged file is skipped, a broken one keeps the list in
//! force, and every attempt is counted. The `jwt.jwks_file`s a list names
//! are re-read with it: when one changed (the list itself unchanged, or
//! inline), the list is rebuilt from the same text, so an issuer's keys kept
//! in a file follow its rotation. The issuer key caches live in one
//! registry for the life of the store, so a reload never forgets keys
//! fetched before.
//!
//! An empty list (`[]`) is accepted and lets no one mint: writing it to the
//! client file is the quickest way to revoke every client at once. It never
//! turns authentication off; only unsetting both variables does that. It is
//! logged as an error at startup and on every reload that swaps it in.

use std::fmt;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::jwt::KeyRegistry;
use super::list::{Client, ClientList, ClientsError};
use crate::config::{Config, KeyMaterial, vars};
use crate::reload::{
    FileReader, ReloadOutcome, ReloadTotals, Reloader, Source, UnreadableFile, read_with,
};

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
    #[error(transparent)]
    Unreadable(#[from] UnreadableFile),
}

/// The live client list.
pub(crate) struct ClientStore {
    list: ArcSwap<Option<ClientList>>,
    reloader: Reloader,
    registry: KeyRegistry,
    /// The text of the list in force and the contents of its `jwks_file`s.
    loaded: Mutex<Option<(KeyMaterial, String)>>,
}

impl fmt::Debug for ClientStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientStore")
            .field("source", self.reloader.source())
            .finish_non_exhaustive()
    }
}

impl ClientStore {
    /// Loads the list the configuration names (or none).
    pub(crate) fn from_config(config: &Config) -> Result<Self, LoadClientsError> {
        Self::load(config, &FileReader::default())
    }

    /// [`ClientStore::from_config`], reading a client file through
    /// `reader`. The text parsed is the text later reloads compare with.
    pub(crate) fn load(config: &Config, reader: &FileReader) -> Result<Self, LoadClientsError> {
        let registry = KeyRegistry::default();
        let (text, variable, source, file_text) =
            match (&config.clients.inline, &config.clients.file) {
                (Some(json), _) => (json.clone(), vars::CLIENTS_JSON, Source::Inline, None),
                (None, Some(path)) => {
                    let text = read_with(reader, vars::CLIENTS_FILE, path)?;
                    (
                        KeyMaterial::new(text.clone()),
                        vars::CLIENTS_FILE,
                        Source::File(path.clone()),
                        Some(text),
                    )
                }
                (None, None) => {
                    return Ok(ClientStore {
                        list: ArcSwap::from_pointee(None),
                        reloader: Reloader::new(Source::Unset, vars::CLIENTS_FILE, None),
                        registry,
                        loaded: Mutex::new(None),
                    });
                }
            };
        let list = parse_named(&text, variable, &registry)?;
        let jwks = jwks_fingerprint(&list);
        Ok(ClientStore {
            list: ArcSwap::from_pointee(Some(list)),
            reloader: Reloader::new(source, vars::CLIENTS_FILE, file_text),
            registry,
            loaded: Mutex::new(Some((text, jwks))),
        })
    }

    /// The list in force; `None` when authentication is off.
    pub(crate) fn current(&self) -> Arc<Option<ClientList>> {
        self.list.load_full()
    }

    /// Where the list comes from.
    pub(crate) fn source(&self) -> &Source {
        self.reloader.source()
    }

    /// The names of the clients in force, in list order (none when off).
    pub(crate) fn names(&self) -> Vec<String> {
        self.current()
            .as_ref()
            .as_ref()
            .map(|list| {
                list.clients()
                    .iter()
                    .map(|client| client.name().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Reload attempts so far, by result.
    pub(crate) fn reloads(&self) -> ReloadTotals {
        self.reloader.totals()
    }

    /// Re-reads the client file, then the `jwks_file`s of the list in
    /// force; keeps the current list if the new one is unusable.
    pub(crate) fn reload(&self) -> Result<ReloadOutcome, LoadClientsError> {
        let outcome = self.reloader.reload(|path, text| {
            let text = KeyMaterial::new(text.to_owned());
            let list = parse_named(&text, vars::CLIENTS_FILE, &self.registry)?;
            let names: Vec<&str> = list.clients().iter().map(Client::name).collect();
            if names.is_empty() {
                tracing::error!(
                    "client list reloaded from {}: {}",
                    path.display(),
                    no_clients(vars::CLIENTS_FILE)
                );
            } else {
                tracing::info!(clients = ?names.join(","), "client list reloaded from {}", path.display());
            }
            self.swap(text, list);
            Ok::<(), LoadClientsError>(())
        })?;
        match outcome {
            ReloadOutcome::Swapped => Ok(outcome),
            _ => Ok(self.reload_jwks_files()?.unwrap_or(outcome)),
        }
    }

    /// Rebuilds the list in force from its own text when a `jwks_file` it
    /// names changed; `None` when none did.
    fn reload_jwks_files(&self) -> Result<Option<ReloadOutcome>, LoadClientsError> {
        let current = self.current();
        let Some(list) = current.as_ref() else {
            return Ok(None);
        };
        if list.jwks_files().is_empty() {
            return Ok(None);
        }
        let text = {
            let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            match loaded.as_ref() {
                Some((text, jwks)) if *jwks != jwks_fingerprint(list) => text.clone(),
                _ => return Ok(None),
            }
        };
        let variable = match self.source() {
            Source::File(_) => vars::CLIENTS_FILE,
            _ => vars::CLIENTS_JSON,
        };
        let list = parse_named(&text, variable, &self.registry)?;
        tracing::info!("client list rebuilt: a jwt.jwks_file changed");
        self.swap(text, list);
        Ok(Some(ReloadOutcome::Swapped))
    }

    fn swap(&self, text: KeyMaterial, list: ClientList) {
        let jwks = jwks_fingerprint(&list);
        *self.loaded.lock().unwrap_or_else(|p| p.into_inner()) = Some((text, jwks));
        self.list.store(Arc::new(Some(list)));
    }
}

/// What an empty list means, for the logs and `check-config`.
pub(crate) fn no_clients(variable: &str) -> String {
    format!(
        "{variable} lists no clients: every mint is refused with 401 until a client is added (authentication stays on; this is how to revoke every client at once)"
    )
}

/// The contents of each `jwks_file` the list names, in list order (one that
/// cannot be read contributes a marker, so its return counts as a change).
/// Read as the list itself is: regular files only, within the timeout.
fn jwks_fingerprint(list: &ClientList) -> String {
    let reader = FileReader::default();
    let mut out = String::new();
    for path in list.jwks_files() {
        match read_with(&reader, "jwt.jwks_file", path) {
            Ok(contents) => out.push_str(&contents),
            Err(_) => out.push_str("\0unreadable"),
        }
        out.push('\0');
    }
    out
}

fn parse_named(
    text: &KeyMaterial,
    variable: &'static str,
    registry: &KeyRegistry,
) -> Result<ClientList, LoadClientsError> {
    ClientList::parse_with(text.expose(), registry)
        .map_err(|source| LoadClientsError::Invalid { variable, source })
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
        let config = {
            let mut config = Config::default();
            config.clients.file = Some(path.clone());
            config
        };
        let store = ClientStore::from_config(&config).unwrap();
        assert_eq!(store.reload().unwrap(), ReloadOutcome::Unchanged);
        std::fs::write(
            &path,
            json!([entry("a", "one"), entry("b", "two")]).to_string(),
        )
        .unwrap();
        assert_eq!(store.reload().unwrap(), ReloadOutcome::Swapped);
        assert_eq!(store.names(), ["a", "b"]);
        std::fs::write(&path, "[").unwrap();
        let err = store.reload().unwrap_err().to_string();
        assert!(
            err.starts_with("MACP_AUTH_CLIENTS_FILE must be a JSON array"),
            "{err}"
        );
        assert_eq!(store.names(), ["a", "b"], "kept");
        std::fs::remove_file(&path).unwrap();
        let err = store.reload().unwrap_err();
        assert!(matches!(err, LoadClientsError::Unreadable(_)), "{err}");
        assert!(
            err.to_string().starts_with(&format!(
                "MACP_AUTH_CLIENTS_FILE names {path:?}, which cannot be read: "
            )),
            "{err}"
        );
        let totals = store.reloads();
        assert_eq!((totals.swapped, totals.unchanged, totals.failed), (1, 1, 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_a_file_there_is_nothing_to_reload() {
        let store = ClientStore::from_config(&Config::default()).unwrap();
        assert_eq!(store.source(), &Source::Unset);
        assert!(store.current().is_none());
        assert_eq!(store.reload().unwrap(), ReloadOutcome::NotReloadable);
        assert_eq!(store.reloads(), ReloadTotals::default());
    }

    fn entry(name: &str, secret: &str) -> serde_json::Value {
        json!({"name": name, "secret_sha256": secret_digest_hex(secret), "senders": ["**"]})
    }

    fn file_config(name: &str, text: &str) -> (Config, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("macp-clients-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("clients.json");
        std::fs::write(&path, text).unwrap();
        let mut config = Config::default();
        config.clients.file = Some(path.clone());
        (config, path)
    }

    #[test]
    fn an_empty_list_revokes_every_client_without_turning_authentication_off() {
        let (config, path) = file_config("empty", &json!([entry("a", "one")]).to_string());
        let store = ClientStore::from_config(&config).unwrap();
        std::fs::write(&path, "[]").unwrap();
        assert_eq!(store.reload().unwrap(), ReloadOutcome::Swapped);
        let current = store.current();
        let list = current.as_ref().as_ref().expect("authentication stays on");
        assert!(list.authenticate("one").is_none());
        assert!(store.names().is_empty());
        std::fs::write(&path, " [ ]\n").unwrap();
        let restarted = ClientStore::from_config(&config).unwrap();
        assert!(
            restarted.current().is_some(),
            "an empty list loads at startup too"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn the_client_store_remembers_the_text_it_parsed_not_a_second_read() {
        let (config, path) = file_config("race", &json!([entry("a", "one")]).to_string());
        let newer = json!([entry("a", "one"), entry("b", "two")]).to_string();
        let reader = FileReader::with(
            move |path| {
                let text = std::fs::read_to_string(path).unwrap();
                std::fs::write(path, &newer).unwrap();
                Ok(text)
            },
            crate::reload::READ_TIMEOUT,
        );
        let store = ClientStore::load(&config, &reader).unwrap();
        assert_eq!(store.names(), ["a"]);
        assert_eq!(store.reload().unwrap(), ReloadOutcome::Swapped);
        assert_eq!(store.names(), ["a", "b"]);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_changed_jwks_file_rebuilds_an_unchanged_list() {
        let dir = std::env::temp_dir().join(format!("macp-clients-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks = dir.join("jwks.json");
        let key = |kid: &str| json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        std::fs::write(&jwks, json!({"keys": [key("a")]}).to_string()).unwrap();
        let inline = json!([{"name": "k8s", "jwt": {"issuer": "https://k", "audiences": ["x"], "subjects": ["*"], "jwks_file": jwks}, "senders": ["*"]}]);
        let mut config = Config::default();
        config.clients.inline = Some(KeyMaterial::new(inline.to_string()));
        let store = ClientStore::from_config(&config).unwrap();
        assert_eq!(
            store.reload().unwrap(),
            ReloadOutcome::NotReloadable,
            "nothing changed"
        );
        std::fs::write(&jwks, json!({"keys": [key("a"), key("b")]}).to_string()).unwrap();
        assert_eq!(
            store.reload().unwrap(),
            ReloadOutcome::Swapped,
            "the key file changed"
        );
        assert_eq!(
            store.reload().unwrap(),
            ReloadOutcome::NotReloadable,
            "and is now loaded"
        );
        std::fs::write(&jwks, "{").unwrap();
        let err = store.reload().unwrap_err().to_string();
        assert!(
            err.starts_with("MACP_AUTH_CLIENTS_JSON client 1 (\"k8s\"): \"jwt.jwks_file\""),
            "{err}"
        );
        assert_eq!(store.names(), ["k8s"], "kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
