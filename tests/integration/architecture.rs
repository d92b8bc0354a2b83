//! `docs/architecture.md` agrees with the source tree it describes.
//!
//! The doc is where a newcomer learns where things live and where a new
//! thing goes, so it is only useful while it is complete: every folder and
//! every module file under `src/` has a row, and no row names a path that
//! is gone. Its layer rules are checked too, against the `use crate::…`
//! lines of every file, so a domain module that starts importing the HTTP
//! layer fails here rather than in review.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every folder under `src/` (as `src/x/`) and every `.rs` file (as
/// `src/x.rs`), with the files that only hold unit tests (`tests.rs`)
/// counted with the module they test, and the Rust files themselves.
fn source_tree() -> (BTreeSet<String>, Vec<PathBuf>) {
    fn walk(dir: &Path, paths: &mut BTreeSet<String>, files: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let relative = path
                .strip_prefix(repo())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                paths.insert(format!("{relative}/"));
                walk(&path, paths, files);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                if path.file_name().is_some_and(|name| name != "tests.rs") {
                    paths.insert(relative);
                }
                files.push(path);
            }
        }
    }
    let (mut paths, mut files) = (BTreeSet::new(), Vec::new());
    walk(&repo().join("src"), &mut paths, &mut files);
    (paths, files)
}

/// The paths of the doc's table rows: the first cell of each row that
/// starts with a path under `src/`.
fn documented_paths() -> Vec<String> {
    let doc = std::fs::read_to_string(repo().join("docs/architecture.md")).unwrap();
    doc.lines()
        .filter_map(|line| line.strip_prefix("| `src/"))
        .map(|rest| {
            let (path, after) = rest.split_once('`').expect("a closing backtick");
            assert!(
                after.trim_start().starts_with('|'),
                "one path per row: `src/{path}`{after}"
            );
            format!("src/{path}")
        })
        .collect()
}

#[test]
fn every_folder_and_module_file_has_exactly_one_row_in_the_architecture_doc() {
    let (tree, _) = source_tree();
    let rows = documented_paths();
    let documented: BTreeSet<String> = rows.iter().cloned().collect();
    assert_eq!(
        rows.len(),
        documented.len(),
        "a path has two rows: {rows:?}"
    );
    let missing: Vec<&String> = tree.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "docs/architecture.md has no row for {missing:?}: add one to the table of its layer"
    );
    let stale: Vec<&String> = documented.difference(&tree).collect();
    assert!(
        stale.is_empty(),
        "docs/architecture.md has rows for paths that no longer exist: {stale:?}"
    );
}

/// The top-level module a file under `src/` belongs to: `src/keys/ring.rs`
/// and `src/keys.rs` both belong to `keys`.
fn top_module(file: &Path) -> String {
    let relative = file.strip_prefix(repo().join("src")).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

/// The top-level modules a file names through `crate::…`, comments left out.
fn crate_imports(file: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::") {
            let name: String = code[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// What each layer may not import; see "Layout and layers".
const FORBIDDEN: &[(&[&str], &[&str])] = &[
    (
        &[
            "keys",
            "clients",
            "mint",
            "signer",
            "reload",
            "ratelimit",
            "audit",
        ],
        &["cli", "app", "http"],
    ),
    (&["http"], &["cli", "app"]),
    (&["app"], &["cli"]),
    (
        &["config"],
        &[
            "cli",
            "app",
            "http",
            "clients",
            "mint",
            "signer",
            "reload",
            "ratelimit",
            "audit",
            "metrics",
            "telemetry",
        ],
    ),
    (
        &["clock", "text", "metrics"],
        &[
            "cli",
            "app",
            "http",
            "keys",
            "clients",
            "mint",
            "signer",
            "reload",
            "ratelimit",
            "audit",
            "config",
            "clock",
            "text",
            "metrics",
            "telemetry",
        ],
    ),
    (
        &["telemetry"],
        &[
            "cli",
            "app",
            "http",
            "keys",
            "clients",
            "mint",
            "signer",
            "reload",
            "ratelimit",
            "audit",
            "metrics",
        ],
    ),
];

#[test]
fn dependencies_point_down_the_layers() {
    let (_, files) = source_tree();
    let mut violations = Vec::new();
    for file in &files {
        let layer = top_module(file);
        for import in crate_imports(file) {
            let forbidden = FORBIDDEN.iter().any(|(layers, banned)| {
                layers.contains(&layer.as_str())
                    && import != layer
                    && banned.contains(&import.as_str())
            });
            if forbidden {
                violations.push(format!(
                    "{} imports crate::{import}",
                    file.strip_prefix(repo()).unwrap().display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn config_uses_nothing_from_the_domain_but_the_signing_algorithm() {
    let (_, files) = source_tree();
    for file in files.iter().filter(|file| top_module(file) == "config") {
        let text = std::fs::read_to_string(file).unwrap();
        for line in text.lines().filter(|line| line.contains("crate::keys")) {
            assert_eq!(
                line.trim(),
                "use crate::keys::SigningAlg;",
                "{}",
                file.display()
            );
        }
    }
}
