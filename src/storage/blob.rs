//! Blob directory layouts (bushy, lawn) and the `.layout` marker; file naming
//! `<oid dir>/<tid_repr>.blob`; the `tmp/` directory for uncommitted data
//! (spec filestorage.md §12).
//!
//! Invariants: committed blob files are read-only (write bits cleared); a blob file
//! for (oid, tid) exists for every data record of a blob object with that record's
//! tid; files are moved into place by rename (copy + remove across file systems).

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::error::StorageError;
use super::tid::{hex_repr, Oid, Tid};
use super::SResult;

/// How oid directories are named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// 8 levels, one `0xNN` directory per oid byte.
    Bushy,
    /// One level named `oid_repr` (deprecated).
    Lawn,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Bushy => "bushy",
            Layout::Lawn => "lawn",
        }
    }
    pub fn parse(s: &str) -> Option<Layout> {
        match s.trim() {
            "bushy" => Some(Layout::Bushy),
            "lawn" => Some(Layout::Lawn),
            _ => None,
        }
    }
}

/// A blob directory in use by one storage.
#[derive(Clone, Debug)]
pub struct BlobDir {
    pub root: PathBuf,
    pub layout: Layout,
}

fn io_err(what: &str, p: &Path, e: io::Error) -> StorageError {
    StorageError::io(format!("{what} {}", p.display()), e)
}

impl BlobDir {
    /// Open (creating if needed) a blob directory. `layout` None = automatic: the
    /// marker if present, `bushy` for a missing or dot-files-only directory, else
    /// `lawn`. An explicit layout that disagrees with the marker is an error.
    /// `read_only` creates nothing.
    pub fn open(root: &Path, layout: Option<Layout>, read_only: bool) -> SResult<BlobDir> {
        let marker = root.join(".layout");
        let existing = match fs::read_to_string(&marker) {
            Ok(s) => Some(Layout::parse(&s).ok_or_else(|| {
                StorageError::Invalid(format!(
                    "{}: unknown blob layout {:?}",
                    marker.display(),
                    s.trim()
                ))
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("reading", &marker, e)),
        };
        let chosen = match (existing, layout) {
            (Some(m), Some(l)) if m != l => {
                return Err(StorageError::Invalid(format!(
                    "blob directory {} has layout {} but {} was configured",
                    root.display(),
                    m.name(),
                    l.name()
                )))
            }
            (Some(m), _) => m,
            (None, Some(l)) => l,
            (None, None) => {
                let only_dot = match fs::read_dir(root) {
                    Ok(rd) => rd
                        .filter_map(|e| e.ok())
                        .all(|e| e.file_name().to_string_lossy().starts_with('.')),
                    Err(_) => true,
                };
                if only_dot {
                    Layout::Bushy
                } else {
                    log::warn!("blob directory {} has no .layout marker and is not empty: using the deprecated lawn layout", root.display());
                    Layout::Lawn
                }
            }
        };
        let bd = BlobDir {
            root: root.to_path_buf(),
            layout: chosen,
        };
        if !read_only {
            fs::create_dir_all(root).map_err(|e| io_err("creating blob directory", root, e))?;
            fs::create_dir_all(bd.tmp_dir()).map_err(|e| io_err("creating", &bd.tmp_dir(), e))?;
            if existing.is_none() {
                fs::write(&marker, chosen.name()).map_err(|e| io_err("writing", &marker, e))?;
            }
        }
        Ok(bd)
    }

    /// Directory for uncommitted blob data.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Relative oid directory.
    pub fn oid_rel(&self, oid: Oid) -> PathBuf {
        match self.layout {
            Layout::Bushy => {
                let mut p = PathBuf::new();
                for b in oid.to_bytes() {
                    p.push(format!("0x{b:02x}"));
                }
                p
            }
            Layout::Lawn => PathBuf::from(hex_repr(oid.0)),
        }
    }

    pub fn oid_dir(&self, oid: Oid) -> PathBuf {
        self.root.join(self.oid_rel(oid))
    }

    /// Path of the blob file for `(oid, tid)`.
    pub fn path(&self, oid: Oid, tid: Tid) -> PathBuf {
        self.oid_dir(oid).join(format!("{}.blob", hex_repr(tid.0)))
    }

    /// Move `src` to the committed name for `(oid, tid)` and make it read-only.
    pub fn install(&self, oid: Oid, tid: Tid, src: &Path) -> SResult<PathBuf> {
        let dir = self.oid_dir(oid);
        fs::create_dir_all(&dir).map_err(|e| io_err("creating blob directory", &dir, e))?;
        let dst = self.path(oid, tid);
        if fs::rename(src, &dst).is_err() {
            fs::copy(src, &dst).map_err(|e| io_err("copying blob file to", &dst, e))?;
            fs::remove_file(src).map_err(|e| io_err("removing", src, e))?;
        }
        self.make_read_only(&dst)?;
        Ok(dst)
    }

    /// Copy the committed file of `(oid, from)` to the name for `(oid, to)`.
    pub fn copy(&self, oid: Oid, from: Tid, to: Tid) -> SResult<PathBuf> {
        let src = self.path(oid, from);
        let dst = self.path(oid, to);
        fs::copy(&src, &dst).map_err(|e| io_err("copying blob file", &src, e))?;
        self.make_read_only(&dst)?;
        Ok(dst)
    }

    fn make_read_only(&self, p: &Path) -> SResult<()> {
        let dir_mode = p
            .parent()
            .and_then(|d| fs::metadata(d).ok())
            .map(|m| m.permissions().mode())
            .unwrap_or(0o755);
        let mode = fs::metadata(p)
            .map_err(|e| io_err("stat", p, e))?
            .permissions()
            .mode();
        let new = (mode & !0o222) | (dir_mode & 0o444);
        fs::set_permissions(p, fs::Permissions::from_mode(new & 0o7777))
            .map_err(|e| io_err("chmod", p, e))
    }

    /// The committed file for `(oid, tid)`, POSKeyError if absent.
    pub fn load(&self, oid: Oid, tid: Tid) -> SResult<PathBuf> {
        let p = self.path(oid, tid);
        if p.is_file() {
            Ok(p)
        } else {
            Err(StorageError::PosKey {
                oid,
                serial: Some(tid),
            })
        }
    }

    /// Remove a blob file written by an aborted transaction (missing is fine).
    pub fn remove(&self, p: &Path) {
        if let Err(e) = fs::remove_file(p) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("could not remove blob file {}: {e}", p.display());
            }
        }
    }
}

/// Whether a record's data is a blob record (class pickle GLOBAL `ZODB.blob\nBlob\n`).
pub fn is_blob_record(data: &[u8]) -> bool {
    data.starts_with(b"\x80\x03cZODB.blob\nBlob\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let d = tempfile::tempdir().unwrap();
        let b = BlobDir::open(d.path(), None, false).unwrap();
        assert_eq!(b.layout, Layout::Bushy);
        assert_eq!(
            fs::read_to_string(d.path().join(".layout")).unwrap(),
            "bushy"
        );
        assert!(d.path().join("tmp").is_dir());
        assert_eq!(
            b.path(Oid(1), Tid(0x03f8f8b1deeeeeee))
                .strip_prefix(d.path())
                .unwrap(),
            Path::new("0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x01/0x03f8f8b1deeeeeee.blob")
        );
        let l = BlobDir {
            root: d.path().into(),
            layout: Layout::Lawn,
        };
        assert_eq!(l.oid_rel(Oid(0x100)), PathBuf::from("0x0100"));
        assert!(BlobDir::open(d.path(), Some(Layout::Lawn), false).is_err());
    }

    #[test]
    fn install_makes_read_only_and_load_finds_it() {
        let d = tempfile::tempdir().unwrap();
        let b = BlobDir::open(&d.path().join("blobs"), None, false).unwrap();
        let src = b.tmp_dir().join("x");
        fs::write(&src, b"hello").unwrap();
        let p = b.install(Oid(2), Tid(9), &src).unwrap();
        assert!(!src.exists());
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o222, 0);
        assert_eq!(b.load(Oid(2), Tid(9)).unwrap(), p);
        assert!(b.load(Oid(2), Tid(10)).is_err());
        assert!(is_blob_record(b"\x80\x03cZODB.blob\nBlob\nq\x01.N."));
    }
}
