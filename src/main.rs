//! The `macp-auth-service` binary: parse the command line, read the
//! configuration, set up the key, bind, and serve until SIGTERM or SIGINT.
//!
//! Every startup failure ends here as one line on standard error and a
//! non-zero exit status.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use macp_auth_service::keys::{KeySource, load_signing_key};
use macp_auth_service::routes::{JWKS_PATH, TOKENS_PATH};
use macp_auth_service::{AppState, Config, run, shutdown_signal, telemetry};
use tokio::net::TcpListener;

/// Identity provider for the Multi-Agent Coordination Protocol: mints
/// short-lived JWTs (POST /tokens) and publishes their verification keys
/// (GET /.well-known/jwks.json).
///
/// Configuration comes from the environment: PORT, HOST, MACP_AUTH_ISSUER,
/// MACP_AUTH_AUDIENCE, MACP_AUTH_MAX_TTL_SECONDS, MACP_AUTH_DEFAULT_TTL_SECONDS,
/// MACP_AUTH_SIGNING_ALG, MACP_AUTH_SIGNING_KEY_JSON and RUST_LOG. See the README.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
    }
}

fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return fail(format_args!("invalid configuration: {err}")),
    };
    telemetry::init(&config.log_filter);
    let key = match load_signing_key(&config) {
        Ok(key) => key,
        Err(err) => return fail(format_args!("invalid configuration: {err}")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(format_args!("cannot start the async runtime: {err}")),
    };
    runtime.block_on(async move {
        let addr = config.listen_addr();
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(err) => return fail(format_args!("cannot listen on {addr}: {err}")),
        };
        let base = config.display_base_url();
        tracing::info!("listening on {addr} (port {})", config.port);
        tracing::info!("issuer={} audience={}", config.issuer, config.audience);
        tracing::info!("key source: {}", key.source());
        tracing::info!("signing alg={} kid={}", key.alg(), key.kid());
        tracing::info!("JWKS: {base}{JWKS_PATH}");
        tracing::info!("Mint: POST {base}{TOKENS_PATH}");
        if key.source() == KeySource::Ephemeral {
            tracing::warn!(
                "ephemeral signing key: tokens minted now stop verifying when this process restarts; set MACP_AUTH_SIGNING_KEY_JSON in any shared environment"
            );
        }
        if config.default_ttl_seconds > config.max_ttl_seconds {
            tracing::warn!(
                "MACP_AUTH_DEFAULT_TTL_SECONDS ({}) exceeds MACP_AUTH_MAX_TTL_SECONDS ({}): requests without ttl_seconds get {}",
                config.default_ttl_seconds,
                config.max_ttl_seconds,
                config.max_ttl_seconds
            );
        }
        let state = match AppState::new(config, key) {
            Ok(state) => state,
            Err(err) => return fail(format_args!("cannot start the signing threads: {err}")),
        };
        match run(listener, state, shutdown_signal()).await {
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

fn fail(message: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("macp-auth-service: {message}");
    ExitCode::FAILURE
}
