//! `serve`: read the configuration, start logging, build the [`Service`],
//! log its fingerprint and serve until SIGTERM or SIGINT.

use std::process::ExitCode;

use super::fail;
use crate::app::Service;
use crate::config::Config;
use crate::http::server::shutdown_signal;
use crate::telemetry;

/// How long the exit waits for work still running on the blocking pool.
const BLOCKING_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the service in the foreground; exit 0 after a clean drain.
pub fn run() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return fail(format_args!("invalid configuration: {err}")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(format_args!("cannot start the async runtime: {err}")),
    };
    // Held to the end of `run`: dropping it flushes every pending line. Trace
    // exports run on the runtime, so it exists first.
    let mut telemetry = match telemetry::init(&config.logging, &config.telemetry, runtime.handle())
    {
        Ok(telemetry) => telemetry,
        Err(err) => return fail(format_args!("{err}")),
    };
    let traces = telemetry.take_traces();
    let code = runtime.block_on(async move {
        // Installs the signal handlers now, before the port opens.
        let shutdown = shutdown_signal();
        let service = match Service::build(config).await {
            Ok(service) => service.with_traces(traces),
            Err(err) => return fail(format_args!("{err}")),
        };
        service.fingerprint().log();
        match service.run_until(shutdown).await {
            Ok(()) => {
                tracing::info!("all in-flight requests finished; exiting");
                ExitCode::SUCCESS
            }
            Err(err) => {
                tracing::error!("{err}");
                ExitCode::FAILURE
            }
        }
    });
    // A reload left running at shutdown (a hung mount or key store) must not
    // hold up the exit: everything that matters has finished by now.
    runtime.shutdown_timeout(BLOCKING_GRACE);
    code
}
