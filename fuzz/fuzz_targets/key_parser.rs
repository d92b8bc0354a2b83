//! `KeyRing::parse` over JWKs, JWK Sets and PEM, for RS256 and ES256, then
//! the ring's schedule at every instant where it can change. See
//! `macp_auth_service_fuzz::invariants::check_key_parser` for the input
//! layout and the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    macp_auth_service_fuzz::invariants::check_key_parser(data);
});
