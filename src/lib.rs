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
//! The crate is a library so the binary, the tests and the tools drive the
//! same code: [`app::Service`] builds everything from a [`Config`] and runs
//! it; [`router`] builds the axum router over an [`AppState`] for tests that
//! need no socket.
//!
//! Layers, from the top (each depends only on those below it):
//! - [`cli`]: the operator commands (`serve`, `keygen`, `keys`, `clients`,
//!   `healthcheck`, `check-config`); `main.rs` only dispatches to them.
//! - [`app`]: the one `Service` that builds and runs everything, the
//!   startup fingerprint, the maintenance task.
//! - [`http`]: routes, middleware, the error contract, the accept loop.
//! - The domain: [`keys`] (signing keys, the pure ring schedule, the live
//!   store), [`clients`] (minting clients and their sender policy),
//!   [`mint`] (request validation and claims), [`signer`] (the signing
//!   pool), [`reload`] (file-backed sources), [`ratelimit`], [`audit`].
//! - At the bottom: [`config`] (the environment, read once) and [`clock`]
//!   (the injected time source). [`metrics`] is a leaf the others feed;
//!   [`telemetry`] sets up logging and OpenTelemetry traces, and is a leaf
//!   too: the http layer and the signer only name its trace target.
//!
//! `docs/architecture.md` has a row per folder and says where each new kind
//! of thing goes.

pub mod app;
pub(crate) mod audit;
pub mod cli;
pub mod clients;
pub mod clock;
pub mod config;
pub mod http;
pub mod keys;
pub(crate) mod metrics;
pub mod mint;
pub(crate) mod ratelimit;
pub mod reload;
pub mod signer;
pub(crate) mod telemetry;
pub(crate) mod text;

pub use config::Config;
pub use http::routes::router;
pub use http::server::ServeError;
pub use http::state::AppState;
