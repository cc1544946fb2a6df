//! The database file as redb sees it: redb's `FileBackend`, remembering *why* it failed.
//!
//! redb reports a failed commit as one error, whether a write found the disk full or an
//! `fsync` failed; the store must tell them apart. A full disk is transient (the commit left
//! the file as it was, and a retry may succeed), a failed `fsync` is not (the kernel may have
//! dropped the dirty pages, and a second `fsync` can then succeed without them reaching the
//! disk). So every failure is recorded here as it happens, where the operation is known.

use std::fs::File;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use redb::StorageBackend;
use redb::backends::FileBackend;

use crate::error::is_full;

/// The first failure since the last [`Failures::clear`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A write or a growth of the file found no room.
    Full,
    /// Anything else: a read, a write or an `fsync` failed.
    Broken,
}

/// Shared between the store and its backend.
#[derive(Clone, Debug, Default)]
pub(crate) struct Failures(Arc<AtomicU8>);

impl Failures {
    fn record(&self, failure: Failure) {
        let code = match failure {
            Failure::Full => 1,
            Failure::Broken => 2,
        };
        // The first failure explains the rest (redb fails every later call once one did).
        let _ = self
            .0
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub(crate) fn first(&self) -> Option<Failure> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(Failure::Full),
            _ => Some(Failure::Broken),
        }
    }

    pub(crate) fn clear(&self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

#[derive(Debug)]
pub(crate) struct Disk {
    file: FileBackend,
    failures: Failures,
    #[cfg(any(test, feature = "testing"))]
    faults: Option<crate::testing::Faults>,
}

impl Disk {
    pub(crate) fn new(
        file: File,
        failures: Failures,
        #[cfg(any(test, feature = "testing"))] faults: Option<crate::testing::Faults>,
    ) -> std::io::Result<Disk> {
        let file = FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(Disk {
            file,
            failures,
            #[cfg(any(test, feature = "testing"))]
            faults,
        })
    }

    fn written<T>(&self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result {
            let failure = if is_full(e) {
                Failure::Full
            } else {
                Failure::Broken
            };
            self.failures.record(failure);
        }
        result
    }

    fn broken<T>(&self, result: std::io::Result<T>) -> std::io::Result<T> {
        if result.is_err() {
            self.failures.record(Failure::Broken);
        }
        result
    }

    fn before_write(&self) -> std::io::Result<()> {
        #[cfg(any(test, feature = "testing"))]
        if let Some(f) = &self.faults {
            return f.before_write();
        }
        Ok(())
    }

    fn before_sync(&self) -> std::io::Result<()> {
        #[cfg(any(test, feature = "testing"))]
        if let Some(f) = &self.faults {
            return f.before_sync();
        }
        Ok(())
    }
}

impl StorageBackend for Disk {
    fn len(&self) -> std::io::Result<u64> {
        self.broken(self.file.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.broken(self.file.read(offset, out))
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let grows = len > self.file.len()?;
        let injected = if grows { self.before_write() } else { Ok(()) };
        self.written(injected.and_then(|()| self.file.set_len(len)))
    }

    fn sync_data(&self) -> std::io::Result<()> {
        // Whatever the error (ENOSPC included, which some file systems report here), a failed
        // fsync is never retried: see the module docs.
        self.broken(self.before_sync().and_then(|()| self.file.sync_data()))
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.written(
            self.before_write()
                .and_then(|()| self.file.write(offset, data)),
        )
    }

    fn close(&self) -> std::io::Result<()> {
        self.file.close()
    }

    // The locks are FileBackend's: redb's own exclusion of a second writer of the file.

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.file.query_lock_range(start, end)
    }
}
