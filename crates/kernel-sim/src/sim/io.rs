//! The public API of synthetic I/O on a loaded [`Driver`].

use std::sync::Arc;

use crate::fltmgr::flt_write;
use crate::report::IoStats;
use crate::sim::Driver;
use crate::world::io::{FileSystemHold, Io, Requestor};

impl Driver {
    /// Synthetic I/O issued by `requestor`.
    pub fn io(&self, requestor: Requestor) -> Io {
        Io::new(Arc::clone(self.kernel()), requestor)
    }

    /// Holds every operation the filter sees in the file system, after its pre-operation
    /// callback, until the guard is dropped: see [`FileSystemHold`].
    pub fn hold_file_system(&self) -> FileSystemHold {
        FileSystemHold::new(Arc::clone(self.kernel()))
    }

    /// The synthetic I/O counters so far (also in the final [`Report`](crate::report::Report)).
    pub fn io_stats(&self) -> IoStats {
        flt_write(self.kernel()).io.stats.snapshot()
    }
}
