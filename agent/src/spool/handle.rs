//! [`SpoolHandle`]: the spool as the other stages see it.

use std::sync::{Arc, Mutex, MutexGuard};

use super::{Spool, SpoolError};

/// The one spool of an agent, shared by the two stages that use it: the
/// pipeline appends records the export queue cannot take and takes records
/// back; the export stage appends batches whose export failed retryably.
/// Each call holds the spool's lock for one operation (or one bounded
/// chunk, [`with`](Self::with)), so neither stage waits long for the other.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let spool = mapwatch::spool::Spool::open(dir.path(), 1 << 20).unwrap();
/// let handle = mapwatch::spool::SpoolHandle::new(spool);
/// assert!(handle.is_empty());
/// assert_eq!(handle.len(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct SpoolHandle {
    spool: Arc<Mutex<Spool>>,
}

impl SpoolHandle {
    /// Shares `spool`.
    pub fn new(spool: Spool) -> SpoolHandle {
        SpoolHandle {
            spool: Arc::new(Mutex::new(spool)),
        }
    }

    /// The spool, unless a panic while holding it left it unusable.
    fn lock(&self) -> Result<MutexGuard<'_, Spool>, SpoolError> {
        self.spool.lock().map_err(|_| SpoolError::Closed)
    }

    /// Appends one record (see [`Spool::push`]).
    pub fn push(&self, resource: &[u8], log: &[u8]) -> Result<(), SpoolError> {
        self.lock()?.push(resource, log)
    }

    /// Appends `records` in one hold of the lock and flushes them; returns
    /// how many were taken, and the error that stopped it, if any.
    pub fn push_batch<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> (u64, Option<SpoolError>) {
        let mut spool = match self.lock() {
            Ok(spool) => spool,
            Err(error) => return (0, Some(error)),
        };
        let mut taken = 0;
        for (resource, log) in records {
            if let Err(error) = spool.push(resource, log) {
                return (taken, Some(error));
            }
            taken += 1;
        }
        (taken, spool.flush().err())
    }

    /// Hands what was appended to the kernel (see [`Spool::flush`]).
    pub fn flush(&self) -> Result<(), SpoolError> {
        self.lock()?.flush()
    }

    /// Runs `f` with the spool locked: for a bounded run of operations.
    pub fn with<R>(&self, f: impl FnOnce(&mut Spool) -> R) -> Result<R, SpoolError> {
        Ok(f(&mut *self.lock()?))
    }

    /// Whether no record waits (a spool left unusable counts as empty).
    pub fn is_empty(&self) -> bool {
        self.lock().map_or(true, |s| s.is_empty())
    }

    /// Records waiting.
    pub fn len(&self) -> u64 {
        self.lock().map_or(0, |s| s.len())
    }

    /// Bytes the segments take.
    pub fn bytes(&self) -> u64 {
        self.lock().map_or(0, |s| s.bytes())
    }

    /// Closes the spool at shutdown (see [`Spool::close`]).
    pub fn close(&self) -> Result<(), SpoolError> {
        self.lock()?.close()
    }
}
