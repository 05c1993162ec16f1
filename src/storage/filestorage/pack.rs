//! FileStorage pack (spec filestorage.md §10, §12.6): the entry point, the commit
//! lock choreography, the `.pack`/`.old` file switch, the index rewrite and the blob
//! removals. Phases 1–2 live in `pack_gc`, phases 3–4 in `pack_copy`.
//!
//! Concurrency: phases 1–3 read a snapshot `(file, end)` without any lock, so loads
//! and commits proceed. Phase 4 copies the transactions committed since, taking the
//! commit lock only to learn the current end with no transaction in progress and
//! releasing it while copying; when nothing is left it keeps the lock and switches
//! files (readers are excluded by the state write lock only for the rename and
//! swap). Invariants: at most one pack at a time (`packing`); on any error before the
//! switch `P` is untouched and `P.pack` is removed; tids, last tid and max oid never
//! change.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::io::{DataFile, OsFile};
use super::pack_copy::{append_removed, copy_one, copy_to_packtime, PackOut};
use super::pack_gc::{find_reachable, TxnScanner};
use super::{suffixed, FileStorage};
use crate::storage::blob::BlobDir;
use crate::storage::tid::{Oid, Tid};
use crate::storage::{PackOutcome, SResult, StorageError};

/// Clears the `packing` flag however the pack ends.
struct PackingGuard<'a>(&'a FileStorage);
impl Drop for PackingGuard<'_> {
    fn drop(&mut self) {
        self.0.packing.store(false, Ordering::Release);
    }
}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> StorageError {
    StorageError::io(format!("{what} {}", p.display()), e)
}

fn remove_if_exists(p: &Path) -> SResult<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("removing", p, e)),
        _ => Ok(()),
    }
}

fn remove_dir_if_exists(p: &Path) -> SResult<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("removing", p, e)),
        _ => Ok(()),
    }
}

/// The stop tid for a pack time, as Python computes it from `time.gmtime(t)` and
/// `t % 60`.
pub fn pack_stop_tid(t: f64) -> Tid {
    Tid::from_unix(t)
}

impl FileStorage {
    /// Keep `Data.fs.old` (and `blobdir.old`) after a pack (Python's `pack_keep_old`,
    /// default true).
    pub fn set_pack_keep_old(&self, keep: bool) {
        self.pack_keep_old.store(keep, Ordering::Relaxed);
    }

    /// Whether a pack is running (undoLog refuses then, as Python's does).
    pub fn is_packing(&self) -> bool {
        self.packing.load(Ordering::Acquire)
    }

    pub(crate) fn pack_impl(&self, t: f64, gc: bool) -> SResult<PackOutcome> {
        self.check_open()?;
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        if !t.is_finite() {
            return Err(StorageError::Invalid(format!("Invalid pack time {t}")));
        }
        let stop = pack_stop_tid(t);
        if stop == Tid::ZERO {
            return Err(StorageError::Invalid("Invalid pack time".into()));
        }
        if self.state_read().index.is_empty() {
            return Ok(PackOutcome::Unchanged);
        }
        if self.packing.swap(true, Ordering::AcqRel) {
            return Err(StorageError::Invalid("Already packing".into()));
        }
        let _guard = PackingGuard(self);
        let old_path = suffixed(&self.path, ".old");
        remove_if_exists(&old_path)?;
        if let Some(b) = &self.blobs {
            remove_dir_if_exists(&blob_old(&b.root))?;
            // Python opens (truncates) `.removed` when the packer is created.
            let rm = b.root.join(".removed");
            fs::write(&rm, b"").map_err(|e| io_err("creating", &rm, e))?;
        }
        let pack_path = suffixed(&self.path, ".pack");
        let res = self.pack_run(stop, gc, &pack_path, &old_path);
        if res.is_err() {
            let _ = fs::remove_file(&pack_path);
        }
        res
    }

    fn pack_run(
        &self,
        stop: Tid,
        gc: bool,
        pack_path: &Path,
        old_path: &Path,
    ) -> SResult<PackOutcome> {
        let snap = self.reader();
        let old_size = snap.end;
        let Some(reach) = find_reachable(&snap, stop, gc)? else {
            return Ok(PackOutcome::Unchanged);
        };
        let packpos = reach.packpos;
        let mut out = PackOut::create(pack_path.to_path_buf(), super::format::MAGIC)?;
        let mut removed = self.blobs.as_ref().map(|_| Vec::new());
        let opos = copy_to_packtime(&snap, &reach, &mut out, removed.as_mut())?;
        drop(reach);
        if let (Some(b), Some(lines)) = (&self.blobs, &removed) {
            append_removed(&b.root.join(".removed"), lines)?;
        }
        if opos == packpos {
            // Nothing freed.
            drop(out);
            let _ = fs::remove_file(pack_path);
            return Ok(PackOutcome::Unchanged);
        }
        // Phase 4: copy what was committed after the snapshot; finish holding the
        // commit lock with no transaction in progress.
        let mut ipos = packpos;
        let g = loop {
            let g = self.commit.lock().unwrap_or_else(|e| e.into_inner());
            let g = self
                .commit_done
                .wait_while(g, |c| c.is_some())
                .unwrap_or_else(|e| e.into_inner());
            let r = self.reader();
            if ipos >= r.end {
                break g;
            }
            drop(g);
            let mut sc = TxnScanner::new(&r);
            while ipos < r.end {
                ipos = copy_one(&r, &mut sc, &mut out, ipos)?;
            }
        };
        let new_size = out.finish()?;
        let index = std::mem::take(&mut out.index);
        drop(out);
        // Phase 5: switch files.
        {
            let mut st = self.state_write();
            fs::rename(&self.path, old_path).map_err(|e| io_err("renaming", &self.path, e))?;
            // Beyond the point of no return.
            if let Err(e) = fs::rename(pack_path, &self.path) {
                log::error!(
                    "pack of {}: cannot rename {} into place: {e}; the storage is closed, \
                     the packed file is {} and the original {}",
                    self.name,
                    pack_path.display(),
                    pack_path.display(),
                    old_path.display()
                );
                self.closed.store(true, Ordering::Release);
                return Err(io_err("renaming", pack_path, e));
            }
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .map_err(|e| io_err("opening", &self.path, e));
            let f = match f {
                Ok(f) => f,
                Err(e) => {
                    self.closed.store(true, Ordering::Release);
                    return Err(e);
                }
            };
            let file: Arc<dyn DataFile> = Arc::new(OsFile(f));
            st.file = file;
            st.index = index;
            st.end = new_size;
        }
        drop(g);
        self.commit_done.notify_all();
        let keep_old = self.pack_keep_old.load(Ordering::Relaxed);
        if let Some(b) = &self.blobs {
            remove_packed_blobs(self, b, keep_old)?;
        }
        if !keep_old {
            remove_if_exists(old_path)?;
        }
        self.write_index()?;
        Ok(PackOutcome::Packed { old_size, new_size })
    }
}

fn blob_old(root: &Path) -> PathBuf {
    suffixed(root, ".old")
}

/// `rmdir` the directory containing `path` if it is empty and inside the blob
/// directory, then its parents (Python's `maybe_remove_empty_dir_containing`).
fn remove_empty_parents(fs_: &FileStorage, root: &Path, path: &Path, level: u32) {
    let Some(dir) = path.parent() else { return };
    if dir.as_os_str().len() <= root.as_os_str().len() {
        return;
    }
    let empty = |d: &Path| {
        fs::read_dir(d)
            .map(|mut i| i.next().is_none())
            .unwrap_or(false)
    };
    if !empty(dir) {
        return;
    }
    let removed = {
        // Above the oid level another thread may be creating an entry: hold the
        // state lock (Python takes the storage lock) while re-checking.
        let _st = (level > 0).then(|| fs_.state_write());
        empty(dir) && fs::remove_dir(dir).is_ok()
    };
    if removed {
        remove_empty_parents(fs_, root, dir, level + 1);
    }
}

/// Walk `dir` recursively collecting files.
fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            walk_files(&e.path(), out)?;
        } else {
            out.push(e.path());
        }
    }
    Ok(())
}

/// Spec §12.6: process `D/.removed` after the switch.
fn remove_packed_blobs(fs_: &FileStorage, b: &BlobDir, keep_old: bool) -> SResult<()> {
    let root = &b.root;
    let old = blob_old(root);
    let removed_path = root.join(".removed");
    if keep_old {
        fs::create_dir(&old).map_err(|e| io_err("creating", &old, e))?;
        let layout = root.join(".layout");
        fs::hard_link(&layout, old.join(".layout")).map_err(|e| io_err("linking", &layout, e))?;
    }
    let move_or_remove = |p: &Path, is_dir: bool| -> SResult<()> {
        if keep_old {
            let rel = p.strip_prefix(root).unwrap_or(p);
            let np = old.join(rel);
            if let Some(d) = np.parent() {
                fs::create_dir_all(d).map_err(|e| io_err("creating", d, e))?;
            }
            fs::rename(p, &np).map_err(|e| io_err("moving", p, e))
        } else if is_dir {
            fs::remove_dir_all(p).map_err(|e| io_err("removing", p, e))
        } else {
            fs::remove_file(p).map_err(|e| io_err("removing", p, e))
        }
    };
    let text = fs::read(&removed_path).map_err(|e| io_err("reading", &removed_path, e))?;
    for line in text.split(|&c| c == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let bytes = unhex(line).ok_or_else(|| {
            StorageError::Pack(format!("Bad record in {}", removed_path.display()))
        })?;
        let oid = Oid(u64::from_be_bytes(
            bytes[..8.min(bytes.len())].try_into().unwrap_or([0; 8]),
        ));
        match bytes.len() {
            8 => {
                let p = b.oid_dir(oid);
                if !p.exists() {
                    continue;
                }
                move_or_remove(&p, true)?;
                remove_empty_parents(fs_, root, &p, 1);
            }
            16 => {
                let tid = Tid(u64::from_be_bytes(
                    bytes[8..16].try_into().unwrap_or([0; 8]),
                ));
                let p = b.path(oid, tid);
                if !p.exists() {
                    continue;
                }
                move_or_remove(&p, false)?;
                remove_empty_parents(fs_, root, &p, 0);
            }
            _ => {
                return Err(StorageError::Pack(format!(
                    "Bad record in {}",
                    removed_path.display()
                )))
            }
        }
    }
    fs::remove_file(&removed_path).map_err(|e| io_err("removing", &removed_path, e))?;
    if !keep_old {
        return Ok(());
    }
    let mut files = Vec::new();
    walk_files(root, &mut files).map_err(|e| io_err("listing", root, e))?;
    for f in files {
        if !f.to_string_lossy().ends_with(".blob") {
            continue;
        }
        let rel = f.strip_prefix(root).unwrap_or(&f);
        let dest = old.join(rel);
        if let Some(d) = dest.parent() {
            fs::create_dir_all(d).map_err(|e| io_err("creating", d, e))?;
        }
        fs::hard_link(&f, &dest).map_err(|e| io_err("linking", &f, e))?;
    }
    Ok(())
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::filestorage::Options;
    use crate::storage::{Storage, TxnMeta, TxnStatus};

    #[test]
    fn unhex_accepts_only_hex_pairs() {
        assert_eq!(unhex(b"00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex(b"0"), None);
        assert_eq!(unhex(b"zz"), None);
        assert_eq!(unhex(b""), Some(vec![]));
    }

    #[test]
    fn second_concurrent_pack_is_refused_and_undo_log_is_disabled() {
        let d = tempfile::tempdir().unwrap();
        let s = FileStorage::open(d.path().join("Data.fs"), Options::default()).unwrap();
        let t = s
            .tpc_begin(&TxnMeta::default(), None, TxnStatus::Normal)
            .unwrap();
        s.store(
            &t,
            Oid(0),
            Tid::ZERO,
            b"\x80\x03cx\ny\nq\x00.\x80\x03}q\x01.",
        )
        .unwrap();
        s.tpc_vote(&t).unwrap();
        s.tpc_finish(t).unwrap();
        s.packing.store(true, Ordering::Release);
        let e = s.pack(4e9, true).unwrap_err();
        assert_eq!(e.to_string(), "Already packing");
        assert!(matches!(s.undo_log(0, 10), Err(StorageError::Undo { .. })));
        s.packing.store(false, Ordering::Release);
        assert_eq!(s.undo_log(0, 10).unwrap().len(), 1);
        assert!(matches!(s.pack(4e9, true), Ok(PackOutcome::Unchanged)));
    }
}
