//! Fuzz the configuration reader: syntax, substitution, `%include` and the schema.
//! The input is split on NUL: the first part is the main file, the others are the
//! files `inc0.conf`, `inc1.conf`, ... it may `%include`. No real filesystem access.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use zeo::config::{parse_str, Host};

struct FuzzHost(Vec<String>);

impl Host for FuzzHost {
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.strip_prefix("inc")
            .and_then(|r| r.strip_suffix(".conf"))
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| self.0.get(i).cloned())
            .ok_or_else(|| std::io::ErrorKind::NotFound.into())
    }
    fn env_var(&self, name: &str) -> Option<String> {
        (name == "HOME").then(|| "/home/fuzz".to_string())
    }
    fn is_dir(&self, p: &Path) -> bool {
        p.as_os_str().len() % 2 == 0
    }
    fn exists(&self, p: &Path) -> bool {
        p.as_os_str().len() % 3 != 0
    }
    fn user_home(&self, user: &str) -> Option<String> {
        (user == "root").then(|| "/root".to_string())
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0').map(str::to_string);
    let main = parts.next().unwrap_or_default();
    let host = FuzzHost(parts.collect());
    match parse_str(&main, Path::new("etc/zeo.conf"), &host) {
        Ok(cfg) => {
            let _ = cfg.to_json().pretty();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
