//! `clients new` and `clients add`: create a minting client without leaving
//! its secret lying around, and add its entry to a client-list file.
//!
//! With `--secret-file`, the secret goes only to a new owner-only file and
//! standard output carries only the entry, which `clients add` reads; the
//! list is rewritten atomically, so a service polling it never sees half a
//! list, and a name already in it is refused rather than shadowed.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use super::args::{ClientsCommand, NewClientArgs};
use super::files::{create_exclusively, read_if_exists, write_atomically};
use super::{CommandError, fail};
use crate::clients::ceiling::ScopeCeiling;
use crate::clients::jwt::JwtTrust;
use crate::clients::{ClientEntry, ClientList, NewClient, new_entry};

/// Creates a client and returns the line to print: the entry alone when the
/// secret went to `--secret-file` (or there is no secret: a JWT client),
/// else `{"secret": …, "client": {…}}`.
pub(crate) fn clients_new(args: NewClientArgs) -> Result<String, CommandError> {
    let secret_file = args.secret_file.clone();
    let (secret, entry) = new_entry(new_client_spec(args))
        .map_err(|err| CommandError::Usage(format!("the client {err}")))?;
    match (secret, secret_file) {
        (Some(secret), Some(path)) => {
            create_exclusively(&path, &secret)?;
            Ok(serde_json::to_string(&entry).expect("entries serialise"))
        }
        (Some(secret), None) => {
            Ok(serde_json::json!({ "secret": secret, "client": entry }).to_string())
        }
        (None, _) => Ok(serde_json::json!({ "client": entry }).to_string()),
    }
}

/// What `clients new`'s flags describe: a secret or a workload-identity
/// client, with its patterns and ceilings.
fn new_client_spec(args: NewClientArgs) -> NewClient {
    let jwt = args.jwt_issuer.map(|issuer| JwtTrust {
        issuer,
        audiences: args.jwt_audience,
        subjects: args.jwt_subject,
        jwks_uri: args.jwt_jwks_uri,
        jwks_file: args.jwt_jwks_file,
        ca_file: args.jwt_ca_file,
    });
    NewClient {
        name: args.name,
        senders: args.senders,
        max_ttl_seconds: args.max_ttl_seconds,
        jwt,
        scopes: ScopeCeiling {
            can_start_sessions: args.ceiling_can_start_sessions,
            can_manage_mode_registry: args.ceiling_can_manage_mode_registry,
            is_observer: args.ceiling_is_observer,
            allowed_modes: args.ceiling_allowed_modes,
            max_open_sessions: args.ceiling_max_open_sessions,
        },
    }
}

/// Adds the entry in `input` to the client-list file at `path` (created if
/// absent) and returns the list's names. Refuses input that carries a
/// secret, a name already listed, and a list the service would not load.
pub(crate) fn clients_add(path: &Path, input: &str) -> Result<Vec<String>, CommandError> {
    let entry = parse_entry(input)?;
    let mut entries: Vec<ClientEntry> = match read_if_exists(path)? {
        None => Vec::new(),
        Some(text) => serde_json::from_str(&text).map_err(|err| {
            CommandError::Usage(format!(
                "{} is not a client list ({err}); fix it, or point --list at the right file",
                path.display()
            ))
        })?,
    };
    if entries.iter().any(|existing| existing.name == entry.name) {
        return Err(CommandError::Usage(format!(
            "{} already has a client named {:?}: choose another --name, or remove the old entry first",
            path.display(),
            entry.name
        )));
    }
    entries.push(entry);
    let text = serde_json::to_string_pretty(&entries).expect("entries serialise");
    let list = ClientList::parse(&text).map_err(|err| {
        CommandError::Usage(format!(
            "the list would not load: it {err}; nothing was written"
        ))
    })?;
    write_atomically(path, &text)?;
    Ok(list
        .clients()
        .iter()
        .map(|client| client.name().to_owned())
        .collect())
}

fn parse_entry(input: &str) -> Result<ClientEntry, CommandError> {
    let usage = |why: String| {
        CommandError::Usage(format!(
            "standard input {why}: pipe in the entry `clients new --secret-file PATH` prints"
        ))
    };
    let value: Value = serde_json::from_str(input.trim()).map_err(|err| {
        usage(format!(
            "is not JSON (syntax error at line {}, column {})",
            err.line(),
            err.column()
        ))
    })?;
    if value.get("secret").is_some() {
        return Err(usage(
            "holds a client secret, which does not belong in a client list (run `clients new` again with --secret-file so the secret goes to a file of its own)".into(),
        ));
    }
    serde_json::from_value(value)
        .map_err(|err| usage(format!("is not a client-list entry ({err})")))
}

/// Runs `clients new` or `clients add`.
pub fn run(command: ClientsCommand) -> ExitCode {
    match command {
        ClientsCommand::New(args) => match clients_new(*args) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(err) => fail(format_args!("clients new: {err}")),
        },
        ClientsCommand::Add { list } => {
            let mut input = String::new();
            if let Err(err) = std::io::stdin().read_to_string(&mut input) {
                return fail(format_args!(
                    "clients add: cannot read standard input: {err}; pipe in the entry `clients new --secret-file PATH` prints"
                ));
            }
            match clients_add(&list, &input) {
                Ok(names) => {
                    let noun = if names.len() == 1 {
                        "client"
                    } else {
                        "clients"
                    };
                    println!(
                        "{}: {} {noun}: {}",
                        list.display(),
                        names.len(),
                        names.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => fail(format_args!("clients add: {err}")),
            }
        }
    }
}
