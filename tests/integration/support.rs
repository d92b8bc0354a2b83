//! Shared test support: stand-ins for the outside services the tests need,
//! each served by the test itself.
//!
//! - `issuer`: an OIDC issuer with its own keys, discovery and JWKS.

pub mod issuer;
