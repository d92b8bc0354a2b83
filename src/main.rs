//! The `macp-auth-service` binary: parse the command line, read the
//! configuration, set up the keys, bind, and serve until SIGTERM or SIGINT.
//!
//! Every startup failure ends here as one line on standard error and a
//! non-zero exit status. The operator subcommands are thin wrappers over
//! `macp_auth_service::cli::commands`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use macp_auth_service::app::maintenance::maintain;
use macp_auth_service::cli::commands::{self, DEFAULT_RSA_BITS};
use macp_auth_service::cli::healthcheck::{PROBE_TIMEOUT, probe};
use macp_auth_service::clients::{ClientsSource, new_client};
use macp_auth_service::clock::{Clock, SystemClock, rfc3339};
use macp_auth_service::http::routes::{JWKS_PATH, METRICS_PATH, TOKENS_PATH, metrics_router};
use macp_auth_service::http::server::serve as serve_app;
use macp_auth_service::keys::SigningAlg;
use macp_auth_service::keys::store::RingSource;
use macp_auth_service::{AppState, Config, run, shutdown_signal, telemetry};
use tokio::net::TcpListener;

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
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
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
struct KeygenArgs {
    /// Signing algorithm of the new key.
    #[arg(long, value_enum, default_value_t = AlgArg::Rs256)]
    alg: AlgArg,
    /// Key id [default: <alg>-<UTC date>-<6 random hex digits>]
    #[arg(long)]
    kid: Option<String>,
    /// RSA modulus size in bits (RS256 only) [default: 2048]
    #[arg(long, value_parser = ["2048", "3072", "4096"])]
    bits: Option<String>,
    /// When the key starts signing (Unix seconds or RFC 3339); until then it
    /// is only published. Publish at least MACP_AUTH_KEY_PREPUBLISH_SECONDS
    /// (600 s) ahead.
    #[arg(long, value_name = "TIME")]
    activate_at: Option<String>,
    /// Read a private JWK on standard input and print its public JWK.
    #[arg(long, conflicts_with_all = ["alg", "kid", "bits", "activate_at"])]
    public: bool,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
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
enum ClientsCommand {
    /// Print a new client: {"secret": ..., "client": {...}}
    ///
    /// The secret is random (256 bits) and shown only here: give it to the
    /// client. Add the "client" object to the client list; it holds only the
    /// secret's SHA-256 digest.
    New {
        /// The client's name, as logs, metrics and audit records show it.
        #[arg(long)]
        name: String,
        /// Sender patterns it may mint for (`*` matches any run of characters).
        #[arg(long, num_args = 1.., required = true)]
        senders: Vec<String>,
        /// Its own ceiling on token lifetime.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_ttl_seconds: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgArg {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::Keygen(args) => keygen(args),
        Command::Keys(command) => keys(command),
        Command::Clients(ClientsCommand::New {
            name,
            senders,
            max_ttl_seconds,
        }) => match new_client(&name, senders, max_ttl_seconds) {
            Ok((secret, entry)) => {
                println!(
                    "{}",
                    serde_json::json!({ "secret": secret, "client": entry })
                );
                ExitCode::SUCCESS
            }
            Err(err) => fail(format_args!("clients new: {err}")),
        },
        Command::Healthcheck { url } => healthcheck(url),
        Command::CheckConfig { require_pinned_key } => check_config(require_pinned_key),
    }
}

fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return fail(format_args!("invalid configuration: {err}")),
    };
    // Held to the end of `serve`: dropping it flushes every pending line.
    let _log_writer = telemetry::init(&config.logging.filter, config.logging.format);
    let state = match AppState::from_config(config) {
        Ok(state) => state,
        Err(err) => return fail(format_args!("{err}")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(format_args!("cannot start the async runtime: {err}")),
    };
    runtime.block_on(async move {
        let config = state.config().clone();
        // Installs the signal handlers now, before the port opens.
        let shutdown = shutdown_signal();
        let (stop_maintenance, maintenance_stopped) = tokio::sync::oneshot::channel::<()>();
        let maintenance = maintain(state.clone(), async move {
            let _ = maintenance_stopped.await;
        });
        let addr = config.listen.addr();
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(err) => return fail(format_args!("cannot listen on {addr}: {err}")),
        };
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some(metrics_addr) = config.listen.metrics_addr {
            let metrics_listener = match TcpListener::bind(metrics_addr).await {
                Ok(listener) => listener,
                Err(err) => {
                    return fail(format_args!(
                        "cannot listen on MACP_AUTH_METRICS_ADDR {metrics_addr}: {err}"
                    ));
                }
            };
            tracing::info!("metrics: http://{metrics_addr}{METRICS_PATH}");
            let app = metrics_router(state.clone());
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = metrics_stopped.await;
                };
                if let Ok(draining) = serve_app(
                    metrics_listener,
                    app,
                    64,
                    config.limits.header_read_timeout,
                    stopped,
                )
                .await
                {
                    draining.finish().await;
                }
            });
        }
        log_fingerprint(&state);

        let maintenance = tokio::spawn(maintenance);
        let served = run(listener, state, shutdown).await;
        let _ = stop_maintenance.send(());
        let _ = stop_metrics.send(());
        let _ = maintenance.await;
        match served {
            Ok(()) => {
                tracing::info!("all in-flight requests finished; exiting");
                ExitCode::SUCCESS
            }
            Err(err) => {
                tracing::error!("{err}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The startup lines operators fingerprint a deployment by (the reference
/// service's, plus alg, kid and the ring's schedule).
fn log_fingerprint(state: &AppState) {
    let config = state.config();
    let base = config.listen.display_base_url();
    let snapshot = state.keys().current();
    let source = match state.keys().source() {
        RingSource::Ephemeral => "ephemeral",
        RingSource::Env => "env",
        RingSource::File(_) => "file",
    };
    tracing::info!(
        "listening on {} (port {})",
        config.listen.addr(),
        config.listen.port
    );
    tracing::info!(
        "issuer={} audience={}",
        config.tokens.issuer,
        config.tokens.audience
    );
    tracing::info!("key source: {source}");
    tracing::info!(
        "signing alg={} kid={}",
        snapshot.signing.alg(),
        snapshot.signing.kid()
    );
    let now = state.clock().now();
    let ring = state.keys().ring();
    if ring.keys().len() > 1 {
        for (index, entry) in ring.keys().iter().enumerate() {
            let status = ring.status(index, now, config.tokens.max_ttl_seconds);
            match entry.activate_at {
                Some(at) => tracing::info!(
                    "key {}: {status} (activate_at {})",
                    entry.key.kid(),
                    rfc3339(at)
                ),
                None => tracing::info!("key {}: {status}", entry.key.kid()),
            }
        }
    }
    tracing::info!("JWKS: {base}{JWKS_PATH}");
    tracing::info!("Mint: POST {base}{TOKENS_PATH}");
    if matches!(state.keys().source(), RingSource::Ephemeral) {
        tracing::warn!(
            "ephemeral signing key: tokens minted now stop verifying when this process restarts; set MACP_AUTH_SIGNING_KEY_JSON or MACP_AUTH_SIGNING_KEY_FILE in any shared environment"
        );
    }
    match state.clients().source() {
        ClientsSource::Off if config.listen.host.is_loopback() => tracing::warn!(
            "minting is unauthenticated: any local process can mint a token for any sender; set MACP_AUTH_CLIENTS_FILE or MACP_AUTH_CLIENTS_JSON to require client credentials"
        ),
        ClientsSource::Off => tracing::error!(
            "minting is unauthenticated and {} is not a loopback address: anyone who can reach this port can mint a token for any sender; set MACP_AUTH_CLIENTS_FILE or MACP_AUTH_CLIENTS_JSON, or restrict the network path",
            config.listen.host
        ),
        source => {
            let clients = state.clients().current();
            let names: Vec<&str> = clients
                .as_ref()
                .as_ref()
                .map(|list| list.clients().iter().map(|client| client.name()).collect())
                .unwrap_or_default();
            tracing::info!(
                "minting requires client credentials ({}): {}",
                if matches!(source, ClientsSource::File(_)) {
                    "MACP_AUTH_CLIENTS_FILE"
                } else {
                    "MACP_AUTH_CLIENTS_JSON"
                },
                names.join(", ")
            );
        }
    }
    if let Some(limit) = config.clients.rate_limit {
        tracing::info!(
            "mint rate limit: {} per second, burst {}, per {}",
            limit.per_second,
            limit.burst,
            if matches!(state.clients().source(), ClientsSource::Off) {
                "peer address"
            } else {
                "client"
            }
        );
    }
    if config.tokens.default_ttl_seconds > config.tokens.max_ttl_seconds {
        tracing::warn!(
            "MACP_AUTH_DEFAULT_TTL_SECONDS ({}) exceeds MACP_AUTH_MAX_TTL_SECONDS ({}): requests without ttl_seconds get {}",
            config.tokens.default_ttl_seconds,
            config.tokens.max_ttl_seconds,
            config.tokens.max_ttl_seconds
        );
    }
}

fn keygen(args: KeygenArgs) -> ExitCode {
    let printed = if args.public {
        let mut private = String::new();
        if let Err(err) = std::io::stdin().read_to_string(&mut private) {
            return fail(format_args!(
                "cannot read a private JWK from standard input: {err}"
            ));
        }
        commands::public_jwk(&private).map_err(|err| format!("the JWK on standard input {err}"))
    } else {
        let alg = SigningAlg::from(args.alg);
        if args.bits.is_some() && alg != SigningAlg::Rs256 {
            return fail(format_args!("--bits applies to RS256 keys only"));
        }
        let bits = args.bits.map_or(DEFAULT_RSA_BITS, |bits| {
            bits.parse().expect("clap allows only the listed sizes")
        });
        commands::keygen(alg, args.kid.as_deref(), bits, args.activate_at.as_deref())
            .map_err(|err| format!("key generation failed: {err}"))
    };
    match printed {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(format_args!("{message}")),
    }
}

fn keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::Add { ring } => {
            let mut new_key = String::new();
            if let Err(err) = std::io::stdin().read_to_string(&mut new_key) {
                return fail(format_args!(
                    "cannot read a private JWK from standard input: {err}"
                ));
            }
            match commands::keys_add(&ring, &new_key) {
                Ok(kids) => {
                    let noun = if kids.len() == 1 { "key" } else { "keys" };
                    println!(
                        "{}: {} {noun}: {}",
                        ring.display(),
                        kids.len(),
                        kids.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => fail(format_args!("keys add: {err}")),
            }
        }
        KeysCommand::Prune {
            ring,
            max_ttl_seconds,
        } => {
            let max_ttl = match max_ttl_seconds {
                Some(max_ttl) => max_ttl,
                None => match Config::from_env() {
                    Ok(config) => config.tokens.max_ttl_seconds,
                    Err(err) => return fail(format_args!("invalid configuration: {err}")),
                },
            };
            match commands::keys_prune(&ring, SystemClock.now(), max_ttl) {
                Ok(dropped) if dropped.is_empty() => {
                    println!("{}: no retired keys", ring.display());
                    ExitCode::SUCCESS
                }
                Ok(dropped) => {
                    println!("{}: dropped {}", ring.display(), dropped.join(", "));
                    ExitCode::SUCCESS
                }
                Err(err) => fail(format_args!("keys prune: {err}")),
            }
        }
    }
}

fn healthcheck(url: Option<String>) -> ExitCode {
    let url = match url {
        Some(url) => url,
        None => match Config::from_env() {
            Ok(config) => commands::default_healthcheck_url(&config),
            Err(err) => return fail(format_args!("invalid configuration: {err}")),
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(format_args!("cannot start the async runtime: {err}")),
    };
    match runtime.block_on(probe(&url, PROBE_TIMEOUT)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(format_args!("unhealthy: {url} {err}")),
    }
}

fn check_config(require_pinned_key: bool) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return fail(format_args!("invalid configuration: {err}")),
    };
    match commands::check_config(&config) {
        Ok((source, report)) => {
            print!("{report}");
            if source == RingSource::Ephemeral {
                if require_pinned_key {
                    return fail(format_args!(
                        "no pinned key: neither MACP_AUTH_SIGNING_KEY_JSON nor MACP_AUTH_SIGNING_KEY_FILE is set, so serving would use an ephemeral key"
                    ));
                }
                eprintln!(
                    "macp-auth-service: warning: no pinned key is configured; serving would use an ephemeral key"
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(format_args!("{err}")),
    }
}

fn fail(message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("macp-auth-service: {message}");
    ExitCode::FAILURE
}
