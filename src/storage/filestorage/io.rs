//! A thin positioned-I/O layer under the engine, so tests can make writes fail.
//!
//! [`DataFile`] is what the engine uses for Data.fs: positioned reads (`pread`, so
//! concurrent readers never serialize on a shared file offset), positioned writes,
//! truncation and fsync. [`OsFile`] is the real thing; [`FaultyFile`] wraps it and
//! consults a shared [`FaultPlan`] on every write, producing short writes, ENOSPC or
//! a simulated crash (bytes past a given file offset are never written and every
//! later write and sync fails). Invariant: a fault never corrupts bytes below the
//! write position it was asked to write at.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

pub trait DataFile: Send + Sync {
    /// Read up to `buf.len()` bytes at `pos`; fewer only at end of file.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Write all of `buf` at `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// fsync (data and metadata).
    fn sync(&self) -> io::Result<()>;
    fn size(&self) -> io::Result<u64>;

    /// Fill `buf` completely from `pos`; `UnexpectedEof` if the file is shorter.
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], pos + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("end of file at {}", pos + done as u64),
                ));
            }
            done += n;
        }
        Ok(())
    }
}

/// Data.fs as an ordinary file.
pub struct OsFile(pub File);

impl DataFile for OsFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        loop {
            match self.0.read_at(buf, pos) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// A failure to inject into the next write(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next write stores only its first `n` bytes, then fails (like a short
    /// `write()` followed by an error).
    ShortWrite(usize),
    /// The next write stores nothing and fails with ENOSPC.
    NoSpace,
    /// Simulated crash: nothing at or after file offset `n` is ever written, and the
    /// write that reaches it and every later write or sync fails.
    CrashAt(u64),
    /// The next fsync fails (EIO).
    SyncFails,
}

/// Shared, test-controlled fault schedule.
#[derive(Debug, Default)]
pub struct FaultPlan {
    next: Mutex<Option<Fault>>,
    crashed: Mutex<bool>,
}

impl FaultPlan {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    /// Arm a fault for the next write (or sync for [`Fault::SyncFails`]).
    pub fn arm(&self, f: Fault) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }
    pub fn disarm(&self) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.crashed.lock().unwrap_or_else(|e| e.into_inner()) = false;
    }
    fn crashed(&self) -> bool {
        *self.crashed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FaultyFile {
    pub inner: OsFile,
    pub plan: Arc<FaultPlan>,
}

fn crash_err() -> io::Error {
    io::Error::other("simulated crash")
}

impl DataFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        if self.plan.crashed() {
            return Err(crash_err());
        }
        let fault = {
            let mut g = self.plan.next.lock().unwrap_or_else(|e| e.into_inner());
            match *g {
                Some(Fault::SyncFails) | None => None,
                Some(Fault::CrashAt(_)) => *g,
                Some(_) => g.take(),
            }
        };
        match fault {
            None => self.inner.write_all_at(buf, pos),
            Some(Fault::ShortWrite(n)) => {
                let n = n.min(buf.len());
                self.inner.write_all_at(&buf[..n], pos)?;
                Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "short write (injected)",
                ))
            }
            Some(Fault::NoSpace) => Err(io::Error::from_raw_os_error(28)),
            Some(Fault::CrashAt(limit)) => {
                let end = pos + buf.len() as u64;
                if end <= limit {
                    return self.inner.write_all_at(buf, pos);
                }
                if pos < limit {
                    self.inner
                        .write_all_at(&buf[..(limit - pos) as usize], pos)?;
                }
                *self.plan.crashed.lock().unwrap_or_else(|e| e.into_inner()) = true;
                Err(crash_err())
            }
            Some(Fault::SyncFails) => unreachable!("filtered above"),
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.plan.crashed() {
            return Err(crash_err());
        }
        self.inner.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        if self.plan.crashed() {
            return Err(crash_err());
        }
        let mut g = self.plan.next.lock().unwrap_or_else(|e| e.into_inner());
        if *g == Some(Fault::SyncFails) {
            *g = None;
            return Err(io::Error::from_raw_os_error(5));
        }
        drop(g);
        self.inner.sync()
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

/// An in-memory data file (fuzzing, unit tests).
#[derive(Debug, Default)]
pub struct MemFile(pub Mutex<Vec<u8>>);

impl MemFile {
    pub fn new(data: Vec<u8>) -> Self {
        MemFile(Mutex::new(data))
    }
}

impl DataFile for MemFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(start) = usize::try_from(pos) else {
            return Ok(0);
        };
        if start >= d.len() {
            return Ok(0);
        }
        let n = buf.len().min(d.len() - start);
        buf[..n].copy_from_slice(&d[start..start + n]);
        Ok(n)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let mut d = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let start = usize::try_from(pos).map_err(|_| io::Error::other("position too large"))?;
        let end = start + buf.len();
        if d.len() < end {
            d.resize(end, 0);
        }
        d[start..end].copy_from_slice(buf);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::other("length too large"))?;
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resize(len, 0);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.lock().unwrap_or_else(|e| e.into_inner()).len() as u64)
    }
}
