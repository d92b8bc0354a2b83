//! Minting clients: who may call `POST /tokens`, for which senders, for how
//! long, and with which scopes.
//!
//! Off unless configured, because today's minters (the MACP control-plane,
//! the examples service) send no `Authorization` header. When a client list
//! is configured, every mint needs `Authorization: Bearer <credential>`: a
//! secret (stored only as a SHA-256 digest, compared in constant time) or,
//! for clients with `"jwt"`, a workload-identity JWT. Each client may mint
//! only for senders matching its glob patterns, its own TTL ceiling applies
//! on top of the service's, and its scope ceiling caps what it may grant.
//!
//! - [`list`]: the client list as operators write it, parsed and validated;
//!   authentication by secret digest.
//! - [`patterns`]: the sender glob patterns a client may mint for.
//! - [`store`]: the live list and its reloads (through [`crate::reload`]).
//! - [`auth`]: which client a bearer credential (secret or JWT) belongs to.
//! - [`jwt`]: workload-identity JWT verification and issuer key caches.
//! - [`ceiling`]: per-client scope ceilings.
//!
//! Each way of identifying a caller, or of limiting what it may ask for,
//! gets its own file here.

pub(crate) mod auth;
pub mod ceiling;
pub mod jwt;
mod list;
mod patterns;
mod store;

pub(crate) use list::{Client, ClientEntry, NewClient, new_entry};
pub use list::{ClientList, secret_digest_hex};
pub(crate) use store::no_clients;
pub(crate) use store::{ClientStore, LoadClientsError};
