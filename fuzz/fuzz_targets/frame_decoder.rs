//! Fuzz the sized-message decoder: arbitrary bytes fed in arbitrary chunks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use zeo::protocol::FrameDecoder;

fuzz_target!(|data: &[u8]| {
    // First byte picks the chunk size, the rest is the stream.
    let Some((&k, stream)) = data.split_first() else {
        return;
    };
    let chunk = 1 + k as usize;
    let mut d = FrameDecoder::new(1 << 16);
    for piece in stream.chunks(chunk) {
        d.feed(piece);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => assert!(!f.is_empty() && f.len() <= 1 << 16),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
