//! Fuzz the ZooKeeper reply decoders (zeo::zookeeper::jute): the first byte picks the
//! operation whose reply body is decoded; the rest is the frame payload.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ops = [1, 2, 3, 4, 5, 8, 11, -11];
    if let Some((&sel, rest)) = data.split_first() {
        let op = ops[usize::from(sel) % ops.len()];
        let _ = zeo::zookeeper::jute::decode_any(op, rest);
        let _ = zeo::zookeeper::jute::decode_connect(rest);
        if rest.len() >= 4 {
            let _ = zeo::zookeeper::jute::frame_len([rest[0], rest[1], rest[2], rest[3]]);
        }
    }
});
