//! Fuzz the restricted pickle decoder (both global policies) and the typed layer
//! on top of it; whatever decodes must re-encode and decode to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zeo::protocol::pickle::{decode, encode, GlobalPolicy};
use zeo::protocol::{decode_request, decode_server_message, Encoding};

fuzz_target!(|data: &[u8]| {
    let _ = decode_request(Encoding::Pickle, data);
    let _ = decode_server_message(Encoding::Pickle, data);
    if let Ok(v) = decode(data, GlobalPolicy::ServerMessages) {
        if let Ok(again) = encode(&v) {
            // Objects rebuilt by `_recon` re-encode as NEWOBJ, which the decoder
            // refuses for exception classes; everything else must round-trip.
            if let Ok(back) = decode(&again, GlobalPolicy::ServerMessages) {
                // NaN != NaN; compare the encodings instead.
                assert_eq!(encode(&back).unwrap(), again);
            }
        }
    }
});
