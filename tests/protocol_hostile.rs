//! Hostile input against the protocol layer: each case must give a clean
//! `ProtocolError` (or a `BadCall` the server answers with an error) — never a
//! panic, never a huge allocation. Plus deterministic mutation runs over the
//! captured frames for every decoder (xorshift PRNG, fixed seed).

use zeo::protocol::message::decode_request;
use zeo::protocol::pickle::{self, GlobalPolicy};
use zeo::protocol::{
    decode_server_message, encode_frame, msgpack, Encoding, FrameDecoder, Incoming, ProtocolError,
};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// All captured payloads of one encoding (C>S and S>C), excluding greetings.
fn captured(enc: &str) -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/protocol")
        .join(enc);
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for p in paths {
        for line in std::fs::read_to_string(p).unwrap().lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            if r["event"] == "frame" && r["len"].as_u64().unwrap() > 4 && r["kind"] != "json" {
                out.push(unhex(r["hex"].as_str().unwrap()));
            }
        }
    }
    out
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    match rng.below(6) {
        0 => {
            let n = rng.below(v.len() + 1);
            v.truncate(n);
        }
        1 => {
            for _ in 0..1 + rng.below(4) {
                if !v.is_empty() {
                    let i = rng.below(v.len());
                    v[i] = rng.next() as u8;
                }
            }
        }
        2 => {
            let i = rng.below(v.len() + 1);
            let extra: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
            v.splice(i..i, extra);
        }
        3 => {
            if !v.is_empty() {
                let i = rng.below(v.len());
                let n = rng.below(v.len() - i + 1);
                v.drain(i..i + n);
            }
        }
        4 => {
            // Set a 4-byte little/big-endian length field to something huge.
            if v.len() > 5 {
                let i = rng.below(v.len() - 4);
                v[i..i + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
            }
        }
        _ => v = (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
    }
    v
}

#[test]
fn garbage_bytes() {
    for garbage in [
        &b"hello world"[..],
        b"\x00\x01\x02\x03",
        b"\xff\xff\xff\xff\xff",
        b"GET / HTTP/1.1\r\n\r\n",
    ] {
        for enc in [Encoding::Pickle, Encoding::Msgpack] {
            assert!(decode_request(enc, garbage).is_err(), "{enc:?} {garbage:?}");
            assert!(decode_server_message(enc, garbage).is_err());
        }
    }
}

#[test]
fn four_gigabyte_length_prefix() {
    let mut d = FrameDecoder::default();
    d.feed(&[0xff, 0xff, 0xff, 0xff]);
    d.feed(&[0u8; 100]);
    match d.next_frame() {
        Err(ProtocolError::FrameTooLarge { size, max }) => {
            assert_eq!(size, 0xffff_ffff);
            assert!(max < size);
        }
        other => panic!("{other:?}"),
    }
    // Just above a configured maximum, too.
    let mut d = FrameDecoder::new(1000);
    d.feed(&encode_frame(&[1u8; 1001]).unwrap());
    assert!(matches!(
        d.next_frame(),
        Err(ProtocolError::FrameTooLarge {
            size: 1001,
            max: 1000
        })
    ));
}

#[test]
fn zero_length_message() {
    let mut d = FrameDecoder::default();
    d.feed(&[0, 0, 0, 0]);
    assert!(matches!(
        d.next_frame(),
        Err(ProtocolError::EmptyMessage { .. })
    ));
    assert!(decode_request(Encoding::Pickle, b"").is_err());
    assert!(decode_request(Encoding::Msgpack, b"").is_err());
}

fn exploit(module: &str, name: &str, arg: &str) -> Vec<u8> {
    // (1, False, "ping", (module.name(arg),)) — the classic REDUCE exploit.
    let mut p = vec![0x80, 3, b'(', b'K', 1, 0x89];
    p.extend(b"X\x04\x00\x00\x00ping");
    p.push(b'c');
    p.extend(format!("{module}\n{name}\n").bytes());
    p.push(b'X');
    p.extend((arg.len() as u32).to_le_bytes());
    p.extend(arg.bytes());
    p.extend([0x85, b'R', 0x85, b't', b'.']);
    p
}

#[test]
fn pickle_naming_os_system_or_builtins_eval() {
    for (m, n) in [
        ("os", "system"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "getattr"),
        ("__builtin__", "eval"),
        ("subprocess", "call"),
        ("copy_reg", "_reconstructor"),
        ("zodbpickle", "binary"),
    ] {
        let p = exploit(m, n, "touch /tmp/pwned");
        for policy in [GlobalPolicy::ClientMessages, GlobalPolicy::ServerMessages] {
            match pickle::decode(&p, policy) {
                Err(ProtocolError::ForbiddenGlobal { module, name }) => {
                    assert_eq!((module.as_str(), name.as_str()), (m, n));
                }
                other => panic!("{m}.{n}: {other:?}"),
            }
        }
        let e = decode_request(Encoding::Pickle, &p).unwrap_err();
        assert!(e.to_string().contains(&format!("{m}.{n}")), "{e}");
    }
    // An allowed global may still not be *called* unless it is set/frozenset.
    let mut p = vec![0x80, 3];
    p.extend(b"cZopeUndo.Prefix\nPrefix\nX\x01\x00\x00\x00/\x85R.");
    assert!(pickle::decode(&p, GlobalPolicy::ClientMessages).is_err());
}

#[test]
fn truncated_pickles() {
    for frame in captured("pickle") {
        for cut in 0..frame.len() {
            let r = decode_request(Encoding::Pickle, &frame[..cut]);
            assert!(r.is_err(), "prefix {cut} of {frame:02x?} decoded");
        }
    }
}

#[test]
fn msgpack_bombs() {
    // deep nesting: (1, False, "ping", [[[[...]]]])
    let mut p = vec![0x94, 0x01, 0xc2, 0xa4, b'p', b'i', b'n', b'g'];
    p.extend(std::iter::repeat_n(0x91u8, 50_000));
    p.push(0xc0);
    let e = decode_request(Encoding::Msgpack, &p).unwrap_err();
    assert!(e.to_string().contains("deeper"), "{e}");
    // huge declared lengths: array32, map32, str32, bin32 of 4G elements/bytes
    for tag in [0xddu8, 0xdf, 0xdb, 0xc6] {
        let q = [
            0x94, 0x01, 0xc2, 0xa1, b'x', tag, 0xff, 0xff, 0xff, 0xff, 0x00,
        ];
        let e = msgpack::decode(&q).unwrap_err();
        assert!(matches!(e, ProtocolError::Malformed { .. }), "{e:?}");
    }
    // array16 of 65535 nils declared in 10 bytes
    assert!(msgpack::decode(&[0xdc, 0xff, 0xff, 0xc0, 0xc0]).is_err());
}

fn bad_call(enc: Encoding, payload: &[u8]) -> String {
    match decode_request(enc, payload) {
        Ok(Incoming::BadCall { error, .. }) => error.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_arity() {
    // loadBefore with one argument, in both encodings.
    let p = pickle::encode(&zeo::protocol::Value::Tuple(vec![
        zeo::protocol::Value::Int(3),
        zeo::protocol::Value::Bool(false),
        zeo::protocol::Value::str("loadBefore"),
        zeo::protocol::Value::Tuple(vec![zeo::protocol::Value::Bytes(vec![0; 8])]),
    ]))
    .unwrap();
    assert_eq!(
        bad_call(Encoding::Pickle, &p),
        "bad message: loadBefore() takes 2 arguments (1 given)"
    );
    let m = [0x94, 0x03, 0xc2, 0xa4, b'v', b'o', b't', b'e', 0x90];
    assert_eq!(
        bad_call(Encoding::Msgpack, &m),
        "bad message: vote() takes 1 arguments (0 given)"
    );
    let m = [0x94, 0x03, 0xc2, 0xa4, b'p', b'i', b'n', b'g', 0x91, 0x01];
    assert!(bad_call(Encoding::Msgpack, &m).contains("ping() takes 0 arguments (1 given)"));
    // A message that is not a 4-tuple at all.
    assert!(decode_request(Encoding::Msgpack, &[0x93, 0x01, 0xc2, 0xa1, b'x']).is_err());
}

#[test]
fn wrong_types() {
    use zeo::protocol::Value as V;
    let call = |name: &str, args: Vec<V>| {
        pickle::encode(&V::Tuple(vec![
            V::Int(3),
            V::Bool(false),
            V::str(name),
            V::Tuple(args),
        ]))
        .unwrap()
    };
    let e = bad_call(
        Encoding::Pickle,
        &call("loadBefore", vec![V::str("00000000"), V::Bytes(vec![0; 8])]),
    );
    assert_eq!(
        e,
        "bad message: loadBefore() argument 1 (oid) must be 8 bytes, got str"
    );
    let e = bad_call(
        Encoding::Pickle,
        &call("getTid", vec![V::Bytes(vec![0; 7])]),
    );
    assert!(e.contains("must be 8 bytes, got bytes"), "{e}");
    let e = bad_call(
        Encoding::Pickle,
        &call("register", vec![V::Int(1), V::Bool(false)]),
    );
    assert!(
        e.contains("register() argument 1 (storage) must be a str, got int"),
        "{e}"
    );
    let e = bad_call(Encoding::Pickle, &call("pack", vec![V::str("yesterday")]));
    assert!(
        e.contains("pack() argument 1 (time) must be a number"),
        "{e}"
    );
    // Method name must be a str; args must be a tuple.
    let p = pickle::encode(&V::Tuple(vec![
        V::Int(1),
        V::Bool(false),
        V::Int(5),
        V::Tuple(vec![]),
    ]))
    .unwrap();
    assert!(decode_request(Encoding::Pickle, &p).is_err());
    let p = pickle::encode(&V::Tuple(vec![
        V::Int(1),
        V::Bool(false),
        V::str("ping"),
        V::Int(0),
    ]))
    .unwrap();
    assert!(bad_call(Encoding::Pickle, &p).contains("arguments must be a tuple"));
    // Unknown methods are errors (connection closed), not calls.
    let p = call("get_size_info", vec![]);
    assert_eq!(
        decode_request(Encoding::Pickle, &p),
        Err(ProtocolError::UnknownMethod("get_size_info".into()))
    );
}

#[test]
fn heartbeat_before_anything() {
    let hb = unhex(
        "8003284affffffff4b00580600000 02e7265706c794e742e"
            .replace(' ', "")
            .as_str(),
    );
    assert_eq!(
        decode_request(Encoding::Pickle, &hb).unwrap(),
        Incoming::Heartbeat
    );
    let hb = [
        0x94, 0xff, 0x00, 0xa6, b'.', b'r', b'e', b'p', b'l', b'y', 0xc0,
    ];
    assert_eq!(
        decode_request(Encoding::Msgpack, &hb).unwrap(),
        Incoming::Heartbeat
    );
}

#[test]
fn robustness_pickle_decoder() {
    let seeds = captured("pickle");
    let mut rng = Rng(0x2545f4914f6cdd1d);
    for _ in 0..30_000 {
        let s = &seeds[rng.below(seeds.len())];
        let m = mutate(&mut rng, s);
        let _ = decode_request(Encoding::Pickle, &m);
        let _ = decode_server_message(Encoding::Pickle, &m);
    }
}

#[test]
fn robustness_msgpack_decoder() {
    let seeds = captured("msgpack");
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for _ in 0..30_000 {
        let s = &seeds[rng.below(seeds.len())];
        let m = mutate(&mut rng, s);
        let _ = decode_request(Encoding::Msgpack, &m);
        let _ = decode_server_message(Encoding::Msgpack, &m);
    }
}

#[test]
fn robustness_frame_decoder() {
    let seeds = captured("pickle");
    let mut rng = Rng(0xdeadbeefcafef00d);
    for _ in 0..5_000 {
        let mut wire = Vec::new();
        for _ in 0..1 + rng.below(4) {
            wire.extend(encode_frame(&seeds[rng.below(seeds.len())]).unwrap());
        }
        let wire = mutate(&mut rng, &wire);
        let mut d = FrameDecoder::new(1 << 20);
        let mut pos = 0;
        'outer: while pos < wire.len() {
            let n = 1 + rng.below(64);
            let end = (pos + n).min(wire.len());
            d.feed(&wire[pos..end]);
            pos = end;
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => assert!(!f.is_empty() && f.len() <= 1 << 20),
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
        }
    }
}
