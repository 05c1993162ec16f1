//! The metrics endpoint's HTTP request parser and router on arbitrary bytes: never
//! panics, and every head of MAX_REQUEST bytes or more is answered.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zeo::server::http::{parse_request, respond, Parsed, MAX_REQUEST};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_request(data);
    if data.len() >= MAX_REQUEST {
        assert_ne!(parsed, Parsed::Incomplete);
    }
    let mut render = || String::from("zeo_up 1\n");
    let _ = respond(data, &mut render);
});
