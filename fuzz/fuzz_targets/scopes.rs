//! `mint::normalize_scopes` over JSON objects and byte-built maps. See
//! `macp_auth_service_fuzz::invariants::check_scopes`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    macp_auth_service_fuzz::invariants::check_scopes(data);
});
