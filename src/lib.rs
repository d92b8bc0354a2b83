//! macp-auth-service: the identity provider of the Multi-Agent Coordination
//! Protocol.
//!
//! It mints short-lived JWTs (`POST /tokens`) for the senders orchestrators
//! name, and publishes the public half of its signing key
//! (`GET /.well-known/jwks.json`) so the MACP runtime can verify them without
//! ever holding the private key. It is a drop-in replacement for the
//! TypeScript reference service: same variables, routes, fields, status codes
//! and error strings.
//!
//! The crate is a library so tests and tools can drive the service in
//! process: [`router`] builds the axum router over an [`AppState`], and
//! [`run`] serves it on any listener until a shutdown future completes.
//!
//! Module map: [`config`] reads the environment once; [`keys`] loads or
//! generates signing keys and derives their public JWKs; [`ring`] decides
//! which key of a ring signs and which are published at any instant, and
//! [`keystore`] keeps the live ring (snapshots, reloads, transition logs)
//! by the [`clock`]; [`clients`] authenticates minting clients and applies
//! their sender policy; [`reload`] is the one reload mechanism both the key
//! ring and the client list use; [`ratelimit`] holds the per-client token buckets;
//! [`mint`] validates requests and builds claims; [`signer`] runs
//! private-key operations on a bounded, low-priority thread pool; [`audit`]
//! records every mint decision; [`metrics`] exposes Prometheus metrics;
//! [`routes`] is the HTTP surface; [`server`] accepts, limits and drains
//! connections; [`maintenance`] reloads and logs in the background;
//! [`telemetry`] sets up logging; [`commands`] and [`healthcheck`]
//! implement the operator subcommands.

pub mod app;
pub mod audit;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod mint;
pub mod ratelimit;
pub mod reload;
pub mod signer;
pub mod telemetry;
pub(crate) mod text;

pub use config::Config;
pub use http::routes::router;
pub use http::server::{ServeError, run, shutdown_signal};
pub use http::state::{AppState, StartupError};
