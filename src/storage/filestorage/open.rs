//! Opening a FileStorage (spec filestorage.md §5): the `Data.fs.lock` flock, the
//! index file (read with Python's sanity check, written in Python's format), the
//! forward scan, and recovery of an incomplete trailing transaction.
//!
//! Invariants: a read-only open never creates or modifies any file; a writable open
//! only ever removes bytes at the end of the file, after copying them to the first
//! free `Data.fs.trN` (except a partial header shorter than 23 bytes, which Python
//! also drops without a copy); damage in the middle of the file refuses the open with
//! a `Corrupted` error naming the offset and what was expected. The scan reads the
//! file sequentially in large chunks and parses only headers.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::format::{
    self, DataHeader, TxnHeader, DATA_HEADER_LEN, MAGIC, STATUS_CHECKPOINT, STATUS_UNDONE,
    TXN_HEADER_LEN,
};
use super::index::{Index, MAX_POS};
use super::io::{DataFile, FaultyFile, OsFile};
use super::{suffixed, Counters, FileStorage, Options, State};
use crate::storage::blob::BlobDir;
use crate::storage::tid::{Oid, Tid};
use crate::storage::{SResult, StorageError};

/// Size of the sequential reads of the open scan.
const CHUNK: usize = 8 << 20;

/// How the scanned file ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Clean end of file (or the `stop` tid was reached).
    Clean,
    /// Fewer than 23 bytes after the last transaction: dropped without a copy.
    ShortHeader,
    /// A transaction running past end of file or still marked `c`: copied aside and
    /// dropped. `tid` is the discarded transaction's tid.
    Incomplete { tid: Tid },
    /// A header whose length field is too small, with no sane trailing length at
    /// the end of the file: treated as garbage at the end.
    Garbage,
}

/// What a scan found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanResult {
    /// End of the last good transaction.
    pub end: u64,
    /// Tid of the last good transaction (or the starting tid).
    pub last_tid: Tid,
    pub tail: Tail,
}

/// Sequential chunked reader over a `DataFile`.
struct Chunked<'a> {
    file: &'a dyn DataFile,
    size: u64,
    buf: Vec<u8>,
    start: u64,
    len: usize,
}

impl<'a> Chunked<'a> {
    fn new(file: &'a dyn DataFile, size: u64) -> Self {
        Chunked {
            file,
            size,
            buf: Vec::new(),
            start: 0,
            len: 0,
        }
    }
    /// `n` bytes at `pos`, or None if they extend past the file size.
    fn get(&mut self, pos: u64, n: usize) -> std::io::Result<Option<&[u8]>> {
        let end = match pos.checked_add(n as u64) {
            Some(e) if e <= self.size => e,
            _ => return Ok(None),
        };
        if !(pos >= self.start && end <= self.start + self.len as u64) {
            let want = ((self.size - pos).min(CHUNK.max(n) as u64)) as usize;
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
            self.file.read_exact_at(&mut self.buf[..want], pos)?;
            self.start = pos;
            self.len = want;
        }
        let off = (pos - self.start) as usize;
        Ok(Some(&self.buf[off..off + n]))
    }
}

fn corrupted(path: &Path, offset: u64, what: impl Into<String>) -> StorageError {
    StorageError::Corrupted {
        path: path.to_path_buf(),
        offset,
        what: what.into(),
    }
}

/// Bytes scanned between two progress reports of the open scan.
pub const PROGRESS_STEP: u64 = 16 * 1024 * 1024;

/// How far the open scan is: `done` of `total` bytes after the index's position (the
/// whole file when `rebuilding` the index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanProgress {
    pub rebuilding: bool,
    pub done: u64,
    pub total: u64,
}

/// A step of [`FileStorage::open`] that may take long on a large storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenStep {
    /// Reading an index file of this many bytes (reported from [`PROGRESS_STEP`] up).
    LoadingIndex { bytes: u64 },
    /// The forward scan: reported when a scan that rebuilds the index (or covers at
    /// least [`PROGRESS_STEP`] bytes) starts, every [`PROGRESS_STEP`] bytes, and at
    /// its end.
    Scanning(ScanProgress),
    /// Writing the rebuilt index (after a reported scan).
    WritingIndex,
}

/// A progress callback for [`FileStorage::open`] (see [`OpenStep`]); the calls cost
/// nothing between steps.
#[derive(Clone)]
pub struct ProgressFn(pub Arc<dyn Fn(OpenStep) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

/// Forward scan (Python's `read_index`) from `start`, merging every good
/// transaction's records into `index`. Never modifies the file; the caller applies
/// the recovery that `tail` calls for. `size` is the file size.
pub fn scan(
    file: &dyn DataFile,
    path: &Path,
    size: u64,
    start: u64,
    ltid: Tid,
    index: &mut Index,
    stop: Option<Tid>,
) -> SResult<ScanResult> {
    scan_with_progress(
        file,
        path,
        size,
        start,
        ltid,
        index,
        stop,
        u64::MAX,
        &mut |_| {},
    )
}

/// [`scan`], calling `progress(bytes scanned)` each time another `step` bytes are
/// scanned.
#[allow(clippy::too_many_arguments)]
pub fn scan_with_progress(
    file: &dyn DataFile,
    path: &Path,
    size: u64,
    start: u64,
    mut ltid: Tid,
    index: &mut Index,
    stop: Option<Tid>,
    step: u64,
    progress: &mut dyn FnMut(u64),
) -> SResult<ScanResult> {
    let step = step.max(1);
    let mut next_report = start.saturating_add(step);
    let io = |e| StorageError::io(format!("reading {}", path.display()), e);
    let mut r = Chunked::new(file, size);
    let mut pos = start;
    let mut tindex: Vec<(Oid, u64)> = Vec::new();
    let mut last_tid = ltid;
    loop {
        if pos >= next_report {
            progress(pos - start);
            next_report = pos.saturating_add(step);
        }
        let h = match r.get(pos, TXN_HEADER_LEN as usize).map_err(io)? {
            Some(b) => TxnHeader::decode(b).ok_or_else(|| corrupted(path, pos, "short header"))?,
            None => {
                let tail = if pos >= size {
                    Tail::Clean
                } else {
                    Tail::ShortHeader
                };
                return Ok(ScanResult {
                    end: pos,
                    last_tid,
                    tail,
                });
            }
        };
        if h.tid <= ltid {
            log::warn!("{} time-stamp reduction at {pos}", path.display());
        }
        ltid = h.tid;
        let tend_full = h.end(pos);
        if tend_full.is_none_or(|e| e > size) || h.status == STATUS_CHECKPOINT {
            return Ok(ScanResult {
                end: pos,
                last_tid,
                tail: Tail::Incomplete { tid: h.tid },
            });
        }
        if !matches!(h.status, b' ' | b'p' | STATUS_UNDONE) {
            log::warn!(
                "{} has invalid status {:?} at {pos}",
                path.display(),
                h.status as char
            );
        }
        if h.tlen < h.header_len() {
            let rtl = match r.get(size - 8, 8).map_err(io)? {
                Some(b) => format::be_u64(b),
                None => 0,
            };
            if rtl > size || size - rtl < pos || rtl < TXN_HEADER_LEN {
                log::error!("{} has invalid transaction header at {pos}", path.display());
                return Ok(ScanResult {
                    end: pos,
                    last_tid,
                    tail: Tail::Garbage,
                });
            }
            return Err(corrupted(
                path,
                pos,
                format!(
                    "invalid transaction header: length {} is shorter than its header ({} bytes)",
                    h.tlen,
                    h.header_len()
                ),
            ));
        }
        if stop.is_some_and(|s| h.tid >= s) {
            return Ok(ScanResult {
                end: pos,
                last_tid,
                tail: Tail::Clean,
            });
        }
        let tpos = pos;
        let tend = pos + h.tlen;
        if h.status != STATUS_UNDONE {
            let mut rpos = tpos + h.header_len();
            tindex.clear();
            while rpos < tend {
                let dh = r
                    .get(rpos, DATA_HEADER_LEN as usize)
                    .map_err(io)?
                    .and_then(DataHeader::decode)
                    .ok_or_else(|| {
                        corrupted(path, rpos, "data record header runs past end of file")
                    })?;
                let rlen = dh.record_len().unwrap_or(u64::MAX);
                if rpos.checked_add(rlen).is_none_or(|e| e > tend) {
                    return Err(corrupted(
                        path,
                        rpos,
                        format!("data record (data length {}) exceeds its transaction record ending at {tend}", dh.plen),
                    ));
                }
                if dh.tloc != tpos {
                    return Err(corrupted(
                        path,
                        rpos,
                        format!(
                            "data record's transaction pointer is {}, expected {tpos}",
                            dh.tloc
                        ),
                    ));
                }
                if dh.vlen != 0 {
                    return Err(corrupted(
                        path,
                        rpos,
                        format!(
                            "data record has a version (length {}); versions are not supported",
                            dh.vlen
                        ),
                    ));
                }
                if rpos > MAX_POS {
                    return Err(corrupted(
                        path,
                        rpos,
                        "file too large for a FileStorage index (2^48 bytes)",
                    ));
                }
                let committed = index.get(dh.oid).unwrap_or(0);
                if committed != dh.prev {
                    if dh.prev != 0 {
                        log::warn!("{} incorrect previous pointer at {rpos}", path.display());
                    } else {
                        log::debug!("{} incorrect previous pointer at {rpos}", path.display());
                    }
                }
                tindex.push((dh.oid, rpos));
                rpos += rlen;
            }
        }
        let trailer = r.get(tend, 8).map_err(io)?.map(format::be_u64);
        if trailer != Some(h.tlen) {
            return Err(corrupted(
                path,
                tend,
                format!("redundant transaction length {} differs from the length {} in the header at {tpos}", trailer.unwrap_or(0), h.tlen),
            ));
        }
        for &(oid, p) in &tindex {
            index.insert(oid, p);
        }
        tindex.clear();
        last_tid = h.tid;
        pos = tend + 8;
    }
}

/// Python's `_check_sanity`: trust an index for position `pos` only if the last
/// non-empty transaction before it is consistent with it. Returns the tid of the
/// last transaction before `pos` when the index is usable.
pub fn check_sanity(file: &dyn DataFile, size: u64, index: &Index, mut pos: u64) -> Option<Tid> {
    if pos < 100 || size < pos {
        return None;
    }
    let mut ltid: Option<Tid> = None;
    let mut b8 = [0u8; 8];
    let mut hb = [0u8; 23];
    loop {
        file.read_exact_at(&mut b8, pos.checked_sub(8)?).ok()?;
        let tl = u64::from_be_bytes(b8);
        pos = pos.checked_sub(tl)?.checked_sub(8)?;
        if pos < 4 {
            return None;
        }
        file.read_exact_at(&mut hb, pos).ok()?;
        let h = TxnHeader::decode(&hb)?;
        if ltid.is_none() {
            ltid = Some(h.tid);
        }
        if h.tlen != tl {
            return None;
        }
        if h.status == STATUS_UNDONE {
            continue;
        }
        if !matches!(h.status, b' ' | b'p') || tl < h.header_len() {
            return None;
        }
        let tend = pos + tl;
        let mut opos = pos + h.header_len();
        if opos == tend {
            continue;
        }
        let mut checked = 0;
        let mut db = [0u8; 42];
        while opos < tend && checked < 5 {
            file.read_exact_at(&mut db, opos).ok()?;
            let dh = DataHeader::decode(&db)?;
            let rend = opos.checked_add(dh.record_len()?)?;
            if rend > tend || dh.tloc != pos {
                return None;
            }
            if index.get(dh.oid).unwrap_or(0) != opos {
                return None;
            }
            checked += 1;
            opos = rend;
        }
        return ltid.filter(|t| *t != Tid::ZERO);
    }
}

/// Write `Data.fs.index` atomically as Python does: `<index>.index_tmp`, unlink the
/// old one, rename.
pub fn write_index_file(index_path: &Path, bytes: &[u8]) -> SResult<()> {
    let tmp = suffixed(index_path, ".index_tmp");
    let io = |e| StorageError::io(format!("writing {}", tmp.display()), e);
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    drop(f);
    let _ = fs::remove_file(index_path);
    fs::rename(&tmp, index_path).map_err(|e| {
        StorageError::io(
            format!("renaming {} to {}", tmp.display(), index_path.display()),
            e,
        )
    })
}

/// Copy `[pos, size)` of the data file to the first free `P.trN`, then truncate.
fn truncate_with_copy(file: &dyn DataFile, path: &Path, pos: u64, size: u64) -> SResult<()> {
    let mut i = 0;
    let side = loop {
        let p = suffixed(path, &format!(".tr{i}"));
        if !p.exists() {
            break p;
        }
        i += 1;
    };
    log::warn!(
        "{} truncated, possibly due to damaged records at {pos}; writing the cut-off bytes to {}",
        path.display(),
        side.display()
    );
    let n = usize::try_from(size - pos)
        .map_err(|_| StorageError::Invalid("tail too large to copy".into()))?;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, pos)
        .map_err(|e| StorageError::io(format!("reading {}", path.display()), e))?;
    fs::write(&side, &buf)
        .map_err(|e| StorageError::io(format!("writing {}", side.display()), e))?;
    file.set_len(pos)
        .map_err(|e| StorageError::io(format!("truncating {}", path.display()), e))
}

fn take_lock(path: &Path) -> SResult<File> {
    let lock_path = suffixed(path, ".lock");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| StorageError::io(format!("opening lock file {}", lock_path.display()), e))?;
    use std::os::fd::AsRawFd;
    #[allow(deprecated)]
    nix::fcntl::flock(f.as_raw_fd(), nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|e| {
        StorageError::Locked {
            path: lock_path.clone(),
            detail: e.desc().to_string(),
        }
    })?;
    // Informational contents, as zc.lockfile writes them.
    let mut f2 = &f;
    let _ = f.set_len(0);
    let _ = f2.write_all(format!(" {}\n", std::process::id()).as_bytes());
    Ok(f)
}

impl FileStorage {
    /// Open (or create) a FileStorage at `path`.
    pub fn open(path: impl AsRef<Path>, opts: Options) -> SResult<FileStorage> {
        let path = path.as_ref().to_path_buf();
        let name = path.display().to_string();
        if opts.read_only && opts.create {
            return Err(StorageError::Invalid(
                "cannot create a read-only FileStorage".into(),
            ));
        }
        if opts.stop.is_some() && !opts.read_only {
            return Err(StorageError::Invalid(
                "time travel (stop) needs a read-only FileStorage".into(),
            ));
        }
        let lock = if opts.read_only {
            None
        } else {
            Some(take_lock(&path)?)
        };
        if opts.create {
            for p in [path.clone(), suffixed(&path, ".index")] {
                if let Err(e) = fs::remove_file(&p) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(StorageError::io(format!("removing {}", p.display()), e));
                    }
                }
            }
        }
        let os = if opts.read_only {
            File::open(&path)
        } else {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
        }
        .map_err(|e| StorageError::io(format!("opening {}", path.display()), e))?;
        let file: Arc<dyn DataFile> = match &opts.faults {
            Some(plan) => Arc::new(FaultyFile {
                inner: OsFile(os),
                plan: plan.clone(),
            }),
            None => Arc::new(OsFile(os)),
        };
        let io = |e| StorageError::io(format!("reading {}", path.display()), e);
        let mut size = file.size().map_err(io)?;
        if size == 0 && !opts.read_only {
            file.write_all_at(MAGIC, 0)
                .map_err(|e| StorageError::io(format!("writing {}", path.display()), e))?;
            size = 4;
        }
        if size > 0 {
            let mut magic = [0u8; 4];
            let n = file.read_at(&mut magic, 0).map_err(io)?;
            if n < 4 || &magic != MAGIC {
                return Err(corrupted(
                    &path,
                    0,
                    format!(
                        "expected the FileStorage magic FS30, found {:?}",
                        String::from_utf8_lossy(&magic[..n])
                    ),
                ));
            }
        }
        // Index file, trusted only after the sanity check.
        let index_path = suffixed(&path, ".index");
        let mut from_index = None;
        // Time travel needs a scan from the start (an index describes the whole file;
        // Python uses it anyway and so ignores `stop` when an index exists).
        let report = |step: OpenStep| {
            if let Some(p) = &opts.progress {
                (p.0)(step)
            }
        };
        if size > 0 && opts.stop.is_none() {
            if let Some(bytes) = fs::metadata(&index_path)
                .ok()
                .map(|m| m.len())
                .filter(|&n| n >= PROGRESS_STEP)
            {
                report(OpenStep::LoadingIndex { bytes });
            }
            if let Ok(bytes) = fs::read(&index_path) {
                match Index::from_file_bytes(&bytes) {
                    Ok((ix, pos)) => match check_sanity(&*file, size, &ix, pos) {
                        Some(ltid) => from_index = Some((ix, pos, ltid)),
                        None => log::warn!("Ignoring index for {}", path.display()),
                    },
                    Err(e) => log::warn!("Ignoring index {}: {e}", index_path.display()),
                }
            }
        }
        let rebuilt = from_index.is_none();
        let (mut index, start, ltid) = from_index.unwrap_or((Index::new(), 4, Tid::ZERO));
        // Report a rebuild with something to scan, or any long scan (not a new file).
        let total = size.saturating_sub(start);
        let reporting = (rebuilt && total > 0) || total >= PROGRESS_STEP;
        let res = if size == 0 {
            ScanResult {
                end: 4,
                last_tid: Tid::ZERO,
                tail: Tail::Clean,
            }
        } else {
            let scanned = |done: u64| {
                report(OpenStep::Scanning(ScanProgress {
                    rebuilding: rebuilt,
                    done,
                    total,
                }))
            };
            if reporting {
                scanned(0);
            }
            let r = scan_with_progress(
                &*file,
                &path,
                size,
                start,
                ltid,
                &mut index,
                opts.stop,
                PROGRESS_STEP,
                &mut |done| scanned(done),
            )?;
            if reporting {
                scanned(total);
            }
            r
        };
        index.shrink();
        let mut discarded = Tid::ZERO;
        match res.tail {
            Tail::Clean => {}
            Tail::ShortHeader => {
                if !opts.read_only {
                    log::warn!(
                        "{} truncated at {} (partial transaction header)",
                        path.display(),
                        res.end
                    );
                    file.set_len(res.end).map_err(|e| {
                        StorageError::io(format!("truncating {}", path.display()), e)
                    })?;
                }
            }
            Tail::Incomplete { tid } => {
                discarded = tid;
                if !opts.read_only {
                    truncate_with_copy(&*file, &path, res.end, size)?;
                }
            }
            Tail::Garbage => {
                if !opts.read_only {
                    truncate_with_copy(&*file, &path, res.end, size)?;
                }
            }
        }
        let blobs = match &opts.blob_dir {
            Some(d) => Some(BlobDir::open(d, opts.blob_layout, opts.read_only)?),
            None => None,
        };
        let max_oid = index.max_oid().map(|o| o.0).unwrap_or(0);
        let fs = FileStorage {
            path: path.clone(),
            name,
            read_only: opts.read_only,
            state: RwLock::new(State {
                file,
                index,
                end: res.end,
                last_tid: res.last_tid,
            }),
            counters: Mutex::new(Counters {
                max_oid,
                last_begun: res.last_tid.max(discarded),
            }),
            commit: Mutex::new(None),
            commit_done: Condvar::new(),
            serials: AtomicU64::new(1),
            lock_file: Mutex::new(lock),
            blobs,
            closed: AtomicBool::new(false),
            packing: AtomicBool::new(false),
            pack_keep_old: AtomicBool::new(true),
        };
        if rebuilt && !opts.read_only {
            if reporting {
                report(OpenStep::WritingIndex);
            }
            fs.write_index()?;
        }
        Ok(fs)
    }

    pub(crate) fn close_impl(&self) -> SResult<()> {
        // Wait for a finish in progress on another thread, and make what was sealed
        // (group commit) durable before the index that includes it is saved.
        let _commit = self.commit.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if !self.read_only {
            if let Err(e) = self.sync() {
                log::error!("{}: fsync at close failed: {e}", self.name);
            }
        }
        let r = if self.read_only {
            Ok(())
        } else {
            let bytes = {
                let st = self.state_read();
                st.index.to_file_bytes(st.end)
            };
            write_index_file(&self.index_path(), &bytes)
        };
        // Dropping the file releases the flock.
        self.lock_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        r
    }
}

/// Scan an in-memory Data.fs image the way open does (no recovery applied); for the
/// fuzz target and robustness tests. Never panics.
pub fn scan_image(data: &[u8]) -> SResult<(Index, ScanResult)> {
    let path = Path::new("<memory>");
    if data.get(..4) != Some(&MAGIC[..]) {
        return Err(corrupted(path, 0, "expected the FileStorage magic FS30"));
    }
    let f = super::io::MemFile::new(data.to_vec());
    let mut index = Index::new();
    let r = scan(&f, path, data.len() as u64, 4, Tid::ZERO, &mut index, None)?;
    let _ = check_sanity(&f, data.len() as u64, &index, r.end);
    Ok((index, r))
}

#[cfg(test)]
mod tests;
