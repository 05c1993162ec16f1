//! The JSON reader of `zeo up --nagios` (ruok replies, status files): never panics, and
//! whatever it accepts survives a dump and re-parse.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zeo::pyjson;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(v) = pyjson::parse(&text) {
        let again = pyjson::dumps(&v);
        assert!(pyjson::parse(&again).is_ok());
    }
});
