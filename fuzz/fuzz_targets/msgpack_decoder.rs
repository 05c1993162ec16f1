//! Fuzz the msgpack decoder and the typed layer; round-trip what decodes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zeo::protocol::msgpack::{decode, encode};
use zeo::protocol::{decode_request, decode_server_message, Encoding};

fuzz_target!(|data: &[u8]| {
    let _ = decode_request(Encoding::Msgpack, data);
    let _ = decode_server_message(Encoding::Msgpack, data);
    if let Ok(v) = decode(data) {
        let again = encode(&v).expect("decoded values encode");
        let back = decode(&again).expect("re-decode");
        assert_eq!(encode(&back).unwrap(), again);
    }
});
