//! The HTTP layer: routes, middleware, the mapping of domain errors to the
//! one `{"error": …}` contract, and the accept loop.
//!
//! Everything that knows about status codes and headers lives here; the
//! domain modules below (`keys`, `clients`, `mint`, `signer`) return their
//! own errors and never build a response.

pub mod error;
mod jwks;
mod metrics;
mod middleware;
mod probes;
pub mod routes;
pub(crate) mod server;
mod stall;
pub(crate) mod state;
mod tokens;
