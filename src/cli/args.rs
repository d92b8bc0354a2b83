//! The command line: `serve` (the default), `keygen`, `keys add|prune`,
//! `clients new|add`, `healthcheck`, `check-config`.
//!
//! Only the shape of the arguments lives here; what each command does lives
//! in the module named for it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::variables_help;
use crate::keys::SigningAlg;

/// Identity provider for the Multi-Agent Coordination Protocol: mints
/// short-lived JWTs (POST /tokens) and publishes their verification keys
/// (GET /.well-known/jwks.json).
///
/// Configuration comes from the environment (PORT, HOST, MACP_AUTH_ISSUER,
/// MACP_AUTH_AUDIENCE, MACP_AUTH_SIGNING_KEY_JSON or MACP_AUTH_SIGNING_KEY_FILE
/// and more): `serve --help` lists every variable with its default.
#[derive(Debug, Parser)]
#[command(name = "macp-auth-service", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    /// The command; none means `serve`.
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default when no command is given)
    ///
    /// Mints tokens on POST /tokens and publishes the keys that verify them
    /// on GET /.well-known/jwks.json, configured by the variables below.
    #[command(after_long_help = variables_help())]
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
    /// TTLs, then a `warning:` or `error:` line for everything serving would
    /// warn about at startup, and exits 0; or prints why the configuration
    /// cannot serve and exits 1. Never prints private key material.
    CheckConfig {
        /// Also fail when no pinned key is configured (an ephemeral key
        /// would be generated).
        #[arg(long)]
        require_pinned_key: bool,
        /// Exit 1 when there is any warning or error line, for CI and
        /// admission checks; 0 only for a clean configuration.
        #[arg(long)]
        strict: bool,
    },
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Signing algorithm of the new key.
    #[arg(long, value_enum, default_value_t = AlgArg::Rs256)]
    pub(crate) alg: AlgArg,
    /// Key id [default: <alg>-<UTC date>-<6 random hex digits>]
    #[arg(long)]
    pub(crate) kid: Option<String>,
    /// RSA modulus size in bits (RS256 only) [default: 2048]
    #[arg(long, value_parser = ["2048", "3072", "4096"])]
    pub(crate) bits: Option<String>,
    /// When the key starts signing (Unix seconds or RFC 3339); until then it
    /// is only published. Publish at least MACP_AUTH_KEY_PREPUBLISH_SECONDS
    /// (600 s) ahead.
    #[arg(long, value_name = "TIME")]
    pub(crate) activate_at: Option<String>,
    /// Read a private JWK on standard input and print its public JWK.
    #[arg(long, conflicts_with_all = ["alg", "kid", "bits", "activate_at"])]
    pub(crate) public: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add the private JWK on standard input (e.g. from `keygen`), or a
    /// member naming a key in a PKCS#11 token or AWS KMS ({"pkcs11": ...} or
    /// {"aws_kms": ...}, checked against its store first), to a ring file,
    /// creating the file if needed
    ///
    /// Warns when the new key activates sooner than
    /// MACP_AUTH_KEY_PREPUBLISH_SECONDS (default 600) from now, or in the
    /// past: verifiers would not have fetched it before its first token.
    Add {
        /// The ring file (JSON: {"keys": [...]}), written atomically, mode 0600.
        #[arg(long)]
        ring: PathBuf,
    },
    /// Drop retired keys (every token they signed has expired) from a ring
    /// file, and say when the next key retires
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
    /// Create a client: its secret, and its client-list entry
    ///
    /// The secret is random (256 bits) and shown only here: give it to the
    /// client. Add the "client" object to the client list; it holds only the
    /// secret's SHA-256 digest. With --jwt-issuer the client authenticates
    /// with a workload-identity JWT instead, and no secret is made:
    /// {"client": {...}}. With --secret-file the secret goes to that new
    /// file (mode 0600) and only the entry is printed, ready for
    /// `clients add`.
    New(Box<NewClientArgs>),
    /// Add the client-list entry on standard input to a client-list file
    ///
    /// Reads one entry (as `clients new --secret-file` prints it), refuses a
    /// name already in the list, and writes the list atomically with mode
    /// 0600, creating it if needed.
    Add {
        /// The client-list file (MACP_AUTH_CLIENTS_FILE).
        #[arg(long, value_name = "FILE")]
        list: PathBuf,
    },
}

/// The options of `clients new`.
#[derive(Debug, Args)]
pub struct NewClientArgs {
    /// The client's name, as logs, metrics and audit records show it.
    #[arg(long)]
    pub(crate) name: String,
    /// Sender patterns it may mint for (`*` matches within one `/` segment, `**` across segments).
    #[arg(long, num_args = 1.., required = true)]
    pub(crate) senders: Vec<String>,
    /// Its own ceiling on token lifetime.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_ttl_seconds: Option<u64>,
    /// Write the secret to this file, which must not exist yet (it is
    /// created with mode 0600 and never overwritten).
    #[arg(long, value_name = "PATH", conflicts_with = "jwt_issuer")]
    pub(crate) secret_file: Option<PathBuf>,
    /// Authenticate with JWTs from this issuer (exact `iss`) instead of a secret.
    #[arg(long, requires_all = ["jwt_audience", "jwt_subject"])]
    pub(crate) jwt_issuer: Option<String>,
    /// Audiences the caller's JWT may carry (one must match).
    #[arg(long, num_args = 1.., requires = "jwt_issuer")]
    pub(crate) jwt_audience: Vec<String>,
    /// Subject patterns the caller's JWT `sub` must match.
    #[arg(long, num_args = 1.., requires = "jwt_issuer")]
    pub(crate) jwt_subject: Vec<String>,
    /// The issuer's JWKS URL (default: found by OIDC discovery).
    #[arg(long, requires = "jwt_issuer")]
    pub(crate) jwt_jwks_uri: Option<String>,
    /// A file holding the issuer's JWKS, re-read with the client list.
    #[arg(long, requires = "jwt_issuer")]
    pub(crate) jwt_jwks_file: Option<PathBuf>,
    /// PEM CA certificates to trust for the issuer's https endpoints.
    #[arg(long, requires = "jwt_issuer")]
    pub(crate) jwt_ca_file: Option<PathBuf>,
    /// Ceiling: `false` forbids tokens that may start sessions.
    #[arg(long, value_name = "BOOL")]
    pub(crate) ceiling_can_start_sessions: Option<bool>,
    /// Ceiling: `false` forbids tokens that may manage the mode registry.
    #[arg(long, value_name = "BOOL")]
    pub(crate) ceiling_can_manage_mode_registry: Option<bool>,
    /// Ceiling: `true` allows only observer tokens.
    #[arg(long, value_name = "BOOL")]
    pub(crate) ceiling_is_observer: Option<bool>,
    /// Ceiling: tokens must list their modes, all from these (none given: only `[]`).
    #[arg(long, num_args = 0.., value_name = "MODE")]
    pub(crate) ceiling_allowed_modes: Option<Vec<String>>,
    /// Ceiling: tokens must set max_open_sessions, at most this.
    #[arg(long, value_name = "N")]
    pub(crate) ceiling_max_open_sessions: Option<u64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum AlgArg {
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
