//! Minting clients: who may call `POST /tokens`, for which senders, and for
//! how long.
//!
//! Off unless configured, because today's minters (the MACP control-plane,
//! the examples service) send no `Authorization` header. When a client list
//! is configured, every mint needs `Authorization: Bearer <secret>`. Secrets
//! are stored only as SHA-256 digests and compared in constant time; each
//! client may mint only for senders matching its glob patterns, and its own
//! TTL ceiling applies on top of the service's.
//!
//! - [`list`]: the client list as operators write it, parsed and validated;
//!   authentication by secret digest.
//! - [`patterns`]: the sender glob patterns a client may mint for.
//! - [`store`]: the live list and its reloads (through [`crate::reload`]).
//!
//! Each way of identifying a caller, or of limiting what it may ask for,
//! gets its own file here.

mod list;
mod patterns;
mod store;

pub(crate) use list::new_client;
pub use list::{Client, ClientList, ClientsError, secret_digest_hex};
pub(crate) use store::no_clients;
pub use store::{ClientStore, LoadClientsError};
