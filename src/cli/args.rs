//! The command line: `serve` (the default), `keygen`, `keys add|prune`,
//! `clients new`, `healthcheck`, `check-config`.
//!
//! Only the shape of the arguments lives here; what each command does lives
//! in the module named for it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::keys::SigningAlg;

/// Identity provider for the Multi-Agent Coordination Protocol: mints
/// short-lived JWTs (POST /tokens) and publishes their verification keys
/// (GET /.well-known/jwks.json).
///
/// Configuration comes from the environment (PORT, HOST, MACP_AUTH_ISSUER,
/// MACP_AUTH_AUDIENCE, MACP_AUTH_MAX_TTL_SECONDS, MACP_AUTH_DEFAULT_TTL_SECONDS,
/// MACP_AUTH_SIGNING_ALG, MACP_AUTH_SIGNING_KEY_JSON or MACP_AUTH_SIGNING_KEY_FILE,
/// RUST_LOG and more); see the README.
#[derive(Debug, Parser)]
#[command(name = "macp-auth-service", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    /// The command; none means `serve`.
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default when no command is given).
    Serve,
    /// Print a new private signing key (one JWK JSON line)
    ///
    /// The output is ready for MACP_AUTH_SIGNING_KEY_JSON or `keys add`. With
    /// --public, print the public JWK of a private JWK read from standard
    /// input instead.
    Keygen(KeygenArgs),
    /// Edit a key ring file (a JWK Set of private keys)
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage minting clients (MACP_AUTH_CLIENTS_FILE entries)
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Probe /healthz: exit 0 on a 200 within 2 s, otherwise 1
    ///
    /// A container health check that needs no shell, curl or wget.
    Healthcheck {
        /// URL to probe [default: http://127.0.0.1:$PORT/healthz]
        #[arg(long)]
        url: Option<String>,
    },
    /// Validate configuration and keys, and print the fingerprint
    ///
    /// Loads the configuration and signing keys exactly as serving would,
    /// prints issuer, audience, alg, kid, each key's schedule, key source and
    /// TTLs and exits 0, or prints the error and exits 1. Never prints
    /// private key material.
    CheckConfig {
        /// Also fail when no pinned key is configured (an ephemeral key
        /// would be generated).
        #[arg(long)]
        require_pinned_key: bool,
    },
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Signing algorithm of the new key.
    #[arg(long, value_enum, default_value_t = AlgArg::Rs256)]
    pub alg: AlgArg,
    /// Key id [default: <alg>-<UTC date>-<6 random hex digits>]
    #[arg(long)]
    pub kid: Option<String>,
    /// RSA modulus size in bits (RS256 only) [default: 2048]
    #[arg(long, value_parser = ["2048", "3072", "4096"])]
    pub bits: Option<String>,
    /// When the key starts signing (Unix seconds or RFC 3339); until then it
    /// is only published. Publish at least MACP_AUTH_KEY_PREPUBLISH_SECONDS
    /// (600 s) ahead.
    #[arg(long, value_name = "TIME")]
    pub activate_at: Option<String>,
    /// Read a private JWK on standard input and print its public JWK.
    #[arg(long, conflicts_with_all = ["alg", "kid", "bits", "activate_at"])]
    pub public: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add the private JWK on standard input (e.g. from `keygen`) to a ring
    /// file, creating the file if needed
    Add {
        /// The ring file (JSON: {"keys": [...]}), written atomically, mode 0600.
        #[arg(long)]
        ring: PathBuf,
    },
    /// Drop retired keys (every token they signed has expired) from a ring file
    Prune {
        /// The ring file.
        #[arg(long)]
        ring: PathBuf,
        /// The service's maximum TTL [default: MACP_AUTH_MAX_TTL_SECONDS, or 3600]
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_ttl_seconds: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Print a new client: {"secret": ..., "client": {...}}
    ///
    /// The secret is random (256 bits) and shown only here: give it to the
    /// client. Add the "client" object to the client list; it holds only the
    /// secret's SHA-256 digest.
    New {
        /// The client's name, as logs, metrics and audit records show it.
        #[arg(long)]
        name: String,
        /// Sender patterns it may mint for (`*` matches within one `/` segment, `**` across segments).
        #[arg(long, num_args = 1.., required = true)]
        senders: Vec<String>,
        /// Its own ceiling on token lifetime.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_ttl_seconds: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AlgArg {
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
}

impl From<AlgArg> for SigningAlg {
    fn from(alg: AlgArg) -> Self {
        match alg {
            AlgArg::Rs256 => SigningAlg::Rs256,
            AlgArg::Es256 => SigningAlg::Es256,
        }
    }
}
