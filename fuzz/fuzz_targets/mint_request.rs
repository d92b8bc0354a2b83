//! `mint::parse_request` over raw `POST /tokens` bodies, against an
//! independent reading of the v1 contract. See
//! `macp_auth_service_fuzz::invariants::check_mint_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    macp_auth_service_fuzz::invariants::check_mint_request(data);
});
