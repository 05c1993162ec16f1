//! Robustness of the configuration reader: thousands of mutated, truncated and random
//! configuration texts (fixed-seed xorshift) must give a config or a ConfigError, never
//! a panic — including through `%include`, `%define` and `-X` overrides.

use std::path::Path;
use zeo::config::{parse_str, Host};

/// Files `a.conf`/`b.conf` for `%include`, one of which includes itself.
struct MemHost;
impl Host for MemHost {
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        match path.file_name().and_then(|n| n.to_str()) {
            Some("a.conf") => Ok("<filestorage inc>\npath $dir/x.fs\n</filestorage>\n".into()),
            Some("b.conf") => Ok("%include b.conf\n".into()),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    }
    fn env_var(&self, name: &str) -> Option<String> {
        (name == "HOME").then(|| "/home/z".into())
    }
    fn is_dir(&self, p: &Path) -> bool {
        !p.to_string_lossy().contains('x')
    }
    fn exists(&self, p: &Path) -> bool {
        !p.to_string_lossy().contains('q')
    }
    fn user_home(&self, _: &str) -> Option<String> {
        None
    }
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    "%define dir /srv\n%import ZODB\n<zeo>\n  address [::1]:8100\n  read-only on\n  \
     invalidation-queue-size 10\n  invalidation-age 1.5\n  transaction-timeout 3\n  msgpack yes\n\
     <ssl>\n certificate c.pem\n key k.pem\n authenticate DYNAMIC\n </ssl>\n</zeo>\n\
     <filestorage 1>\n  path ${dir}/Data.fs\n  blob-dir b\n  quota 10MB\n  pack-gc off\n</filestorage>\n\
     %include a.conf\n",
    "<zeo>\naddress /tmp/z.sock\n</zeo>\n<blobstorage b>\nblob-dir x\n<filestorage>\npath p\n\
     </filestorage>\n</blobstorage>\n<mappingstorage m/>\n<eventlog>\nlevel debug\n<logfile>\n\
     path STDOUT\nformat %(asctime)s %(message)s\n</logfile>\n<syslog>\nfacility local0\n</syslog>\n\
     </eventlog>\n<runner>\nprogram x\n</runner>\n<zookeeper>\nconnection z:1\npath /p\n</zookeeper>\n",
];

const TOKENS: &[&str] = &[
    "<",
    ">",
    "</",
    "/>",
    "%",
    "$",
    "$$",
    "${",
    "}",
    "$(",
    ")",
    "(",
    "#",
    "\n",
    " ",
    "\t",
    "%define ",
    "%include a.conf\n",
    "%include b.conf\n",
    "%import ZEO\n",
    "<zeo>\n",
    "</zeo>\n",
    "<filestorage>",
    "address ",
    "path ",
    "~",
    "~root/",
    "é",
    "\u{1c}",
    "\r",
    ":",
    "[",
    "]",
    "99999999999999999999",
    "-",
    "KB",
    "GB",
    "%(",
    ")s",
    "\0",
];

fn mutate(rng: &mut XorShift, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 => {
                let tok = TOKENS[rng.below(TOKENS.len())].as_bytes();
                bytes.splice(at..at, tok.iter().copied());
            }
            1 if at < bytes.len() => {
                let end = (at + rng.below(20)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 if at < bytes.len() => bytes[at] = rng.next() as u8,
            3 => bytes.truncate(at),
            _ => {
                let from = rng.below(bytes.len());
                let to = (from + rng.below(40)).min(bytes.len());
                let chunk = bytes[from..to].to_vec();
                let at = at.min(bytes.len());
                bytes.splice(at..at, chunk);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn mutated_configs_never_panic() {
    for seed in SEEDS {
        if let Err(e) = parse_str(seed, Path::new("etc/zeo.conf"), &MemHost) {
            panic!("seed rejected: {e}");
        }
    }
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut rejected) = (0, 0);
    for i in 0..6000 {
        let seed = SEEDS[i % SEEDS.len()];
        let text = mutate(&mut rng, seed);
        match parse_str(&text, Path::new("etc/zeo.conf"), &MemHost) {
            Ok(cfg) => {
                accepted += 1;
                let _ = cfg.to_json().pretty();
            }
            Err(e) => {
                rejected += 1;
                let _ = e.to_string();
            }
        }
    }
    // The mutations must exercise both outcomes, or this test proves little.
    assert!(
        accepted > 100 && rejected > 1000,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn random_text_never_panics() {
    let mut rng = XorShift(42);
    for _ in 0..3000 {
        let len = rng.below(300);
        let mut s = String::new();
        while s.len() < len {
            if rng.below(3) == 0 {
                s.push_str(TOKENS[rng.below(TOKENS.len())]);
            } else {
                s.push(char::from_u32(rng.below(0x3000) as u32).unwrap_or('x'));
            }
        }
        let _ = parse_str(&s, Path::new("r.conf"), &MemHost);
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "<a>\n".repeat(10_000) + &"</a>\n".repeat(10_000);
    assert!(parse_str(&deep, Path::new("d.conf"), &MemHost).is_err());
    let e = parse_str("%include b.conf\n", Path::new("d.conf"), &MemHost).unwrap_err();
    assert!(e.message.contains("nested"), "{e}");
}
