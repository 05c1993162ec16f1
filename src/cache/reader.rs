//! Streaming trace reader: turns any byte source (plain file, `.gz`, standard input, a
//! pipe) into records, applying the misaligned-record rule of spec §4.
//!
//! Invariants: the reader only ever moves forward through its own buffer, so it needs
//! no seekable input (Python's seek-back of 18 bytes is a move inside the buffer);
//! `bytes_read()` is the number of (uncompressed) bytes taken from the source, which at
//! end of input equals Python's `f.tell()`; a short head or a short oid at the end is
//! end of input, never an error. The buffer is bounded (one maximal record fits).

use super::record::{self, Parsed, Peek, Record, HEAD_SIZE, MISALIGNED_SKIP};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;

/// What to do after a head whose timestamp is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Realign {
    /// Continue 8 bytes after the start of the bad head (Python's seek-back; used by
    /// `cache_simul` and non-quiet `cache_stats`).
    Resync,
    /// Continue right after the 26 bytes read (`cache_stats -q`, which does not seek).
    SkipHead,
}

/// One step of reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A complete record that started at `offset` in the (uncompressed) stream.
    Record { offset: u64, rec: Record<'a> },
    /// A head with a zero timestamp at `offset`; nothing was counted.
    Misaligned { offset: u64 },
}

/// Buffer size: large reads, and always room for one maximal record (26 + 65535).
const BUF_SIZE: usize = 256 * 1024;

/// Streaming record reader over any `Read`.
pub struct TraceReader<R> {
    src: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    eof: bool,
    realign: Realign,
}

impl<R: Read> TraceReader<R> {
    pub fn new(src: R, realign: Realign) -> Self {
        TraceReader {
            src,
            buf: vec![0; BUF_SIZE],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
            realign,
        }
    }

    /// The next record or misaligned head; `None` at end of input.
    pub fn next_item(&mut self) -> io::Result<Option<Item<'_>>> {
        loop {
            // Size the record from its head before parsing it (once) in place.
            let avail = &self.buf[self.start..self.end];
            let need = match record::peek_len(avail) {
                Peek::ZeroTimestamp => {
                    let offset = self.base + self.start as u64;
                    self.start += match self.realign {
                        Realign::Resync => MISALIGNED_SKIP,
                        Realign::SkipHead => HEAD_SIZE,
                    };
                    return Ok(Some(Item::Misaligned { offset }));
                }
                Peek::Len(n) if n <= avail.len() => {
                    let at = self.start;
                    self.start += n;
                    return match record::parse(&self.buf[at..at + n]) {
                        Parsed::Record(rec) => Ok(Some(Item::Record {
                            offset: self.base + at as u64,
                            rec,
                        })),
                        // peek_len and parse read the same head fields.
                        _ => unreachable!("record length disagrees with its head"),
                    };
                }
                Peek::Len(n) => n,
            };
            if self.eof {
                return Ok(None);
            }
            self.fill(need)?;
        }
    }

    /// Read more bytes until at least `need` are buffered from `start`, or end of input.
    fn fill(&mut self, need: usize) -> io::Result<()> {
        if self.start + need > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        if need > self.buf.len() {
            self.buf.resize(need, 0);
        }
        while self.end - self.start < need {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Bytes taken from the source so far (Python's `f.tell()` once input has ended).
    pub fn bytes_read(&self) -> u64 {
        self.base + self.end as u64
    }

    /// Stream offset of the next unparsed byte.
    pub fn position(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Whether the source reported end of input.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// Forget end of input, so the next read asks the source again (`--follow`).
    pub fn clear_eof(&mut self) {
        self.eof = false;
    }

    /// The underlying source.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.src
    }
}

/// Where a trace comes from, decided from its name as the Python tools do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `-`: standard input, never decompressed.
    Stdin,
    /// A name ending in `.gz`: read through gzip (the suffix decides, not the content).
    Gzip(OsString),
    /// Anything else: a plain file.
    Plain(OsString),
}

impl Source {
    pub fn from_arg(name: &OsStr) -> Source {
        if name.as_bytes() == b"-" {
            Source::Stdin
        } else if name.as_bytes().ends_with(b".gz") {
            Source::Gzip(name.to_owned())
        } else {
            Source::Plain(name.to_owned())
        }
    }

    /// The name to use in messages.
    pub fn display_name(&self) -> String {
        match self {
            Source::Stdin => "<stdin>".to_string(),
            Source::Gzip(p) | Source::Plain(p) => p.to_string_lossy().into_owned(),
        }
    }

    /// Open for reading. A directory is refused with `EISDIR`, as Python's `open` does.
    pub fn open(&self) -> io::Result<Box<dyn Read>> {
        match self {
            Source::Stdin => Ok(Box::new(io::stdin())),
            Source::Gzip(p) => {
                let file = io::BufReader::with_capacity(256 * 1024, open_file(p)?);
                Ok(Box::new(Prefetch::spawn(
                    flate2::bufread::MultiGzDecoder::new(file),
                )))
            }
            Source::Plain(p) => Ok(Box::new(open_file(p)?)),
        }
    }
}

/// A reader that runs its source (a decompressor) on its own thread, a few chunks
/// ahead of the consumer, so decompression and analysis overlap on two cores. Errors
/// of the source arrive in order, after the bytes that preceded them.
pub struct Prefetch {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    done: bool,
}

impl Prefetch {
    const CHUNK: usize = 1 << 20;

    pub fn spawn<R: Read + Send + 'static>(mut src: R) -> Prefetch {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        std::thread::spawn(move || loop {
            let mut buf = vec![0u8; Self::CHUNK];
            let mut n = 0;
            let result = loop {
                if n == buf.len() {
                    break Ok(());
                }
                match src.read(&mut buf[n..]) {
                    Ok(0) => break Ok(()),
                    Ok(k) => n += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(n);
            let last = n == 0 || result.is_err();
            if n != 0 && tx.send(Ok(buf)).is_err() {
                return; // the consumer went away
            }
            if let Err(e) = result {
                let _ = tx.send(Err(e));
            }
            if last {
                return;
            }
        });
        Prefetch {
            rx,
            chunk: Vec::new(),
            at: 0,
            done: false,
        }
    }
}

impl Read for Prefetch {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Open a regular file for reading, refusing directories like Python does.
pub fn open_file(path: &OsStr) -> io::Result<File> {
    let f = File::open(path)?;
    if f.metadata()?.is_dir() {
        return Err(io::Error::from_raw_os_error(nix::libc::EISDIR));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ts: u32, code: u32, oid: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(&(oid.len() as u16).to_be_bytes());
        v.extend_from_slice(&[0; 16]);
        v.extend_from_slice(oid);
        v
    }

    /// A reader that hands out one byte per read call, to exercise refills.
    struct Trickle(Vec<u8>, usize);
    impl Read for Trickle {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if self.1 >= self.0.len() || b.is_empty() {
                return Ok(0);
            }
            b[0] = self.0[self.1];
            self.1 += 1;
            Ok(1)
        }
    }

    fn collect(data: Vec<u8>, realign: Realign) -> (Vec<(u64, bool)>, u64) {
        let mut r = TraceReader::new(Trickle(data, 0), realign);
        let mut out = Vec::new();
        while let Some(item) = r.next_item().unwrap() {
            out.push(match item {
                Item::Record { offset, .. } => (offset, true),
                Item::Misaligned { offset } => (offset, false),
            });
        }
        (out, r.bytes_read())
    }

    #[test]
    fn reads_records_and_counts_trailing_bytes() {
        let mut d = rec(1, 0, b"");
        d.extend(rec(2, 0x22, &[0; 8]));
        d.extend_from_slice(&[9; 5]);
        let (items, n) = collect(d, Realign::Resync);
        assert_eq!(items, vec![(0, true), (26, true)]);
        assert_eq!(n, 26 + 34 + 5);
    }

    #[test]
    fn zero_timestamp_resync_and_skip_head() {
        let mut d = vec![0u8; 8];
        d.extend(rec(2, 0x22, &[0; 8]));
        let (items, _) = collect(d.clone(), Realign::Resync);
        assert_eq!(items, vec![(0, false), (8, true)]);
        // Without the seek-back, the 26 bytes are dropped and the rest is garbage.
        let (items, n) = collect(d, Realign::SkipHead);
        assert_eq!(items[0], (0, false));
        assert_eq!(n, 42);
    }

    #[test]
    fn short_oid_ends_input() {
        let mut d = rec(1, 0x22, &[0; 8]);
        d.truncate(30);
        let (items, n) = collect(d, Realign::Resync);
        assert!(items.is_empty());
        assert_eq!(n, 30);
    }

    #[test]
    fn source_from_name() {
        assert_eq!(Source::from_arg(OsStr::new("-")), Source::Stdin);
        assert!(matches!(
            Source::from_arg(OsStr::new("a.gz")),
            Source::Gzip(_)
        ));
        assert!(matches!(
            Source::from_arg(OsStr::new("a.gzip")),
            Source::Plain(_)
        ));
    }
}
