//! The `macp-auth-service` binary: parse the command line and hand it to the
//! command that runs it. Everything else lives in the library, where the
//! tests can reach it: the [`Service`](macp_auth_service::app::Service) that
//! `serve` runs, and one module per operator command under `cli`.

use std::process::ExitCode;

use clap::Parser;
use macp_auth_service::cli::args::{Cli, Command};
use macp_auth_service::cli::{check_config, clients, healthcheck, keygen, keys, serve};

fn main() -> ExitCode {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve::run(),
        Command::Keygen(args) => keygen::run(args),
        Command::Keys(command) => keys::run(command),
        Command::Clients(command) => clients::run(command),
        Command::Healthcheck { url } => healthcheck::run(url),
        Command::CheckConfig {
            require_pinned_key,
            strict,
        } => check_config::run(require_pinned_key, strict),
    }
}
