use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;
use crate::clock::ManualClock;
use crate::keys::SigningAlg;
use crate::keys::generate_private_jwk;

/// The ES256 JWK named `kid`: one key per kid, as a reload requires.
fn jwk(kid: &str, activate_at: Option<u64>) -> Value {
    static BY_KID: std::sync::Mutex<Vec<(String, serde_json::Map<String, Value>)>> =
        std::sync::Mutex::new(Vec::new());
    let mut keys = BY_KID.lock().unwrap_or_else(|poison| poison.into_inner());
    let mut jwk = match keys.iter().find(|(known, _)| known == kid) {
        Some((_, jwk)) => jwk.clone(),
        None => {
            let jwk = generate_private_jwk(SigningAlg::Es256, 0, Some(kid)).unwrap();
            keys.push((kid.to_owned(), jwk.clone()));
            jwk
        }
    };
    if let Some(at) = activate_at {
        jwk.insert("activate_at".into(), at.into());
    }
    Value::Object(jwk)
}

fn config() -> Config {
    let mut config = Config::default();
    config.keys.alg = SigningAlg::Es256;
    config
}

fn ring(keys: Vec<Value>) -> KeyRing {
    let text = json!({ "keys": keys }).to_string();
    KeyRing::parse(SigningAlg::Es256, &text, KeySource::Env).unwrap()
}

fn store(keys: Vec<Value>, clock: &ManualClock) -> KeyStore {
    KeyStore::new(
        &config(),
        ring(keys),
        Source::Inline,
        Arc::new(clock.clone()),
    )
}

/// A ring file in its own directory, removed with it.
struct RingFile {
    dir: PathBuf,
    path: PathBuf,
}

impl RingFile {
    fn new(name: &str, keys: Vec<Value>) -> Self {
        let dir = std::env::temp_dir().join(format!("macp-keystore-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = RingFile {
            path: dir.join("ring.json"),
            dir,
        };
        file.write(keys);
        file
    }

    fn write(&self, keys: Vec<Value>) {
        std::fs::write(&self.path, json!({ "keys": keys }).to_string()).unwrap();
    }

    fn store(&self, clock: &ManualClock) -> KeyStore {
        let mut config = config();
        config.keys.file = Some(self.path.clone());
        let loaded = load_ring(&config, clock.now()).unwrap();
        KeyStore::loaded(&config, loaded, Arc::new(clock.clone()))
    }
}

impl Drop for RingFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn snapshots_follow_the_clock_across_a_rotation() {
    let clock = ManualClock::at(1_000);
    let store = store(vec![jwk("old", None), jwk("new", Some(2_000))], &clock);
    let before = store.current();
    assert_eq!(before.signing.kid(), "old");
    assert_eq!(before.published_kids, ["old", "new"]);

    clock.set(2_000);
    let after = store.current();
    assert_eq!(after.signing.kid(), "new");
    assert_eq!(after.jwks, before.jwks, "the published set did not change");
    assert_eq!(after.etag, before.etag);

    clock.set(2_000 + 3_600 + 60);
    let retired = store.current();
    assert_eq!(retired.published_kids, ["new"]);
    assert_ne!(retired.etag, after.etag);
}

#[test]
fn the_cache_lifetime_never_outlives_a_scheduled_change() {
    let clock = ManualClock::at(1_000);
    let store = store(vec![jwk("old", None), jwk("new", Some(1_000))], &clock);
    let snapshot = store.current();
    let retire_at = 1_000 + 3_600 + 60;
    assert_eq!(snapshot.next_published_change, Some(retire_at));
    assert_eq!(snapshot.max_age(1_000, 300), 300);
    assert_eq!(snapshot.max_age(retire_at - 10, 300), 10);
    let steady = KeyStore::single(
        &config(),
        SigningKey::generate(SigningAlg::Es256).unwrap(),
        Arc::new(clock.clone()),
    );
    assert_eq!(steady.current().max_age(1_000, 300), 300);
}

#[test]
fn the_etag_is_strong_and_follows_the_content() {
    let clock = ManualClock::at(1_000);
    let a = store(vec![jwk("a", None)], &clock).current();
    let b = store(vec![jwk("b", None)], &clock).current();
    let tag = a.etag.to_str().unwrap();
    assert!(tag.starts_with('"') && tag.ends_with('"') && !tag.starts_with("W/"));
    assert_ne!(a.etag, b.etag);
}

#[test]
fn reloads_swap_good_files_and_keep_the_ring_on_bad_ones() {
    let file = RingFile::new("reload", vec![jwk("first", None)]);
    let clock = ManualClock::at(10_000);
    let store = file.store(&clock);
    assert_eq!(store.reload().unwrap().0, ReloadOutcome::Unchanged);

    file.write(vec![jwk("first", None), jwk("second", Some(20_000))]);
    assert_eq!(store.reload().unwrap().0, ReloadOutcome::Swapped);
    assert_eq!(store.current().published_kids, ["first", "second"]);

    for broken in ["{not json", r#"{"keys": []}"#, ""] {
        std::fs::write(&file.path, broken).unwrap();
        let err = store.reload().unwrap_err().to_string();
        assert!(err.starts_with("MACP_AUTH_SIGNING_KEY_FILE"), "{err}");
        assert_eq!(store.current().published_kids, ["first", "second"], "kept");
    }
    std::fs::remove_file(&file.path).unwrap();
    assert!(matches!(store.reload(), Err(LoadKeyError::Unreadable(_))));
    assert_eq!(store.current().signing.kid(), "first");
    let totals = store.reloads();
    assert_eq!((totals.swapped, totals.unchanged, totals.failed), (1, 1, 4));
}

#[test]
fn a_key_removed_by_reload_is_reported_as_removed_not_as_retired() {
    let (old, new) = (jwk("old", None), jwk("new", Some(100)));
    let file = RingFile::new("removed", vec![old, new.clone()]);
    let store = file.store(&ManualClock::at(200));
    file.write(vec![new]);
    let (outcome, notices) = store.reload().unwrap();
    assert_eq!(outcome, ReloadOutcome::Swapped);
    assert_eq!(
        notices,
        [Notice::RemovedWhilePublished { kid: "old".into() }],
        "neither retired nor superseded"
    );
}

#[test]
fn each_activation_supersession_and_retirement_is_a_notice_with_kid_and_time() {
    let clock = ManualClock::at(1_000);
    let store = store(vec![jwk("old", None), jwk("new", Some(2_000))], &clock);
    clock.set(2_000);
    assert_eq!(
        store.refresh().1,
        [
            Notice::Activated {
                kid: "new".into(),
                at: 2_000
            },
            Notice::Superseded {
                kid: "old".into(),
                by: "new".into(),
                at: 2_000
            },
        ]
    );
    assert_eq!(store.refresh().1, [], "nothing changes twice");
    let retire_at = 2_000 + 3_600 + 60;
    clock.set(retire_at);
    assert_eq!(
        store.refresh().1,
        [Notice::Retired {
            kid: "old".into(),
            at: retire_at
        }]
    );
}

#[test]
fn a_key_published_too_shortly_before_it_signs_is_warned_about() {
    let clock = ManualClock::at(10_000);
    let open = |keys| {
        let store = KeyStore::open(
            &config(),
            LoadedRing::unfiled(ring(keys), Source::Inline),
            Arc::new(clock.clone()),
        );
        store.1
    };
    // 300 s of notice, under the 600 s pre-publication window.
    assert_eq!(
        open(vec![jwk("current", None), jwk("soon", Some(10_300))]),
        [Notice::ShortPrepublication {
            kid: "soon".into(),
            activate_at: 10_300,
            published_for: 300,
            window: 600,
        }]
    );
    assert_eq!(
        open(vec![jwk("current", None), jwk("later", Some(10_900))]),
        [],
        "900 s is enough notice"
    );
}

#[test]
fn a_reload_that_signs_with_an_unpublished_key_at_once_warns_of_the_emergency() {
    let old = jwk("old", None);
    let file = RingFile::new("emergency", vec![old.clone()]);
    let store = file.store(&ManualClock::at(5_000));
    file.write(vec![old, jwk("replacement", Some(4_000))]);
    let (_, notices) = store.reload().unwrap();
    assert_eq!(store.current().signing.kid(), "replacement");
    assert_eq!(
        notices,
        [
            Notice::EmergencyRotation {
                kid: "replacement".into()
            },
            Notice::Activated {
                kid: "replacement".into(),
                at: 5_000
            },
            Notice::Superseded {
                kid: "old".into(),
                by: "replacement".into(),
                at: 5_000
            },
        ]
    );
}

#[test]
fn environment_and_ephemeral_rings_are_not_reloadable() {
    let clock = ManualClock::at(1);
    let store = store(vec![jwk("a", None)], &clock);
    assert_eq!(store.reload().unwrap().0, ReloadOutcome::NotReloadable);
    assert_eq!(store.reloads(), ReloadTotals::default());
}

#[test]
fn load_ring_names_the_variable_at_fault() {
    let both_missing = {
        let mut config = config();
        config.keys.file = Some(PathBuf::from("/nonexistent/ring.json"));
        config
    };
    let err = load_ring(&both_missing, 0).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "MACP_AUTH_SIGNING_KEY_FILE names \"/nonexistent/ring.json\", which cannot be read"
        ),
        "{err}"
    );
    let future_only = {
        let mut config = config();
        config.keys.inline = Some(crate::config::KeyMaterial::new(
            json!({"keys": [jwk("later", Some(50))]}).to_string(),
        ));
        config
    };
    let err = load_ring(&future_only, 10).unwrap_err().to_string();
    assert!(
        err.starts_with("MACP_AUTH_SIGNING_KEY_JSON has no active key"),
        "{err}"
    );
}

#[test]
fn a_successor_activated_in_the_past_leaves_the_old_key_published_for_its_last_tokens() {
    let file = RingFile::new("late", vec![jwk("old", None)]);
    let clock = ManualClock::at(10_000);
    let store = file.store(&clock);
    assert_eq!(store.current().signing.kid(), "old");
    // The new key's activation is already two hours past when it arrives.
    file.write(vec![jwk("old", None), jwk("new", Some(2_800))]);
    let (outcome, notices) = store.reload().unwrap();
    assert_eq!(outcome, ReloadOutcome::Swapped);
    assert!(
        notices.contains(&Notice::Superseded {
            kid: "old".into(),
            by: "new".into(),
            at: 10_000
        }),
        "{notices:?}"
    );
    let snapshot = store.current();
    assert_eq!(snapshot.signing.kid(), "new");
    assert_eq!(
        snapshot.published_kids,
        ["old", "new"],
        "old signed a moment ago"
    );
    let retire_at = 10_000 + 3_600 + 60;
    assert_eq!(snapshot.next_published_change, Some(retire_at));
    assert_eq!(store.next_change(), Some(retire_at));

    // A second reload of the same keys keeps what this process knows.
    clock.set(10_500);
    file.write(vec![jwk("new", Some(2_800)), jwk("old", None)]);
    store.reload().unwrap();
    assert_eq!(store.current().published_kids, ["new", "old"]);

    clock.set(retire_at - 1);
    assert!(store.current().published_kids.contains(&"old".to_owned()));
    clock.set(retire_at);
    assert_eq!(store.current().published_kids, ["new"]);
}

#[test]
fn the_store_remembers_the_text_it_parsed_not_a_second_read() {
    // The file changes right after startup reads it, before anything else
    // could look at it: the store must still see the change on reload.
    let file = RingFile::new("race", vec![jwk("first", None)]);
    let newer = json!({ "keys": [jwk("first", None), jwk("second", Some(20_000))] }).to_string();
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = reads.clone();
    let reader = FileReader::with(
        move |path| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let text = std::fs::read_to_string(path).unwrap();
            std::fs::write(path, &newer).unwrap();
            Ok(text)
        },
        crate::reload::READ_TIMEOUT,
    );
    let mut config = config();
    config.keys.file = Some(file.path.clone());
    let clock = ManualClock::at(10_000);
    let loaded = load_ring_with(&config, clock.now(), &reader).unwrap();
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    let store = KeyStore::loaded(&config, loaded, Arc::new(clock.clone()));
    assert_eq!(store.current().published_kids, ["first"]);
    assert_eq!(store.reload().unwrap().0, ReloadOutcome::Swapped);
    assert_eq!(store.current().published_kids, ["first", "second"]);
    assert_eq!(store.reload().unwrap().0, ReloadOutcome::Unchanged);
}

#[test]
fn a_reload_in_which_a_kid_names_another_key_is_refused_and_the_ring_kept() {
    let clock = ManualClock::at(1_000);
    let first = jwk("a", None);
    let file = RingFile::new("kid-reused", vec![first.clone()]);
    let store = file.store(&clock);
    let published = store.current().jwks.clone();

    // The same kid, another key: refused, whatever else changed.
    let another = Value::Object(generate_private_jwk(SigningAlg::Es256, 0, Some("a")).unwrap());
    file.write(vec![another, jwk("b", Some(5_000))]);
    let err = store.reload().unwrap_err();
    assert_eq!(
        err.to_string(),
        "MACP_AUTH_SIGNING_KEY_FILE has kid \"a\" naming a different key than the ring in force; give the new key a new kid (verifiers cache keys by kid)"
    );
    assert_eq!(store.current().jwks, published, "the ring in force stays");

    // The same key under the same kid, and a new key under a new kid: fine.
    file.write(vec![first, jwk("b", Some(5_000))]);
    let (outcome, _) = store.reload().unwrap();
    assert_eq!(outcome, ReloadOutcome::Swapped);
    assert_eq!(store.current().published_kids, ["a", "b"]);
}
