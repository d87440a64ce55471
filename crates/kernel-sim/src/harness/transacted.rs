//! The stress workload's transacted file: per thread and volume, a file created in a
//! transaction, written, renamed and deleted through the transacted handle, closed, then the
//! transaction committed (even threads) or rolled back (odd ones), so that filters enlisted in
//! it get both outcomes' notifications. Only NTFS takes the transacted create; elsewhere it is
//! refused with `STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED`, which is expected.

use vigil_sys::{FILE_CREATE, GENERIC_WRITE, NTSTATUS};

use crate::fltmgr::instances::VolumeId;
use crate::fltmgr::transactions::STATUS_TRANSACTION_ABORTED;
use crate::world::io::{Io, STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED};

/// Runs the transacted file under `dir` on `volume`; the number of unexpected statuses
/// (injected failures cause some).
pub(crate) fn transacted_file(io: &Io, volume: VolumeId, dir: &str, thread: usize) -> u64 {
    let mut unexpected = 0;
    let mut check = |status: NTSTATUS| {
        if status != 0 {
            unexpected += 1;
        }
    };
    let transaction = io.begin_transaction();
    io.set_current_transaction(Some(&transaction));
    let created = io.create(
        volume,
        &format!(r"{dir}\Tx.txt"),
        FILE_CREATE,
        0,
        GENERIC_WRITE,
    );
    io.set_current_transaction(None);
    match created {
        Ok(f) => {
            check(io.write(&f, 0, b"transacted"));
            check(io.rename(&f, "TxRenamed.txt", false));
            check(io.set_disposition(&f, true));
            check(io.cleanup(&f));
            io.close(f);
        }
        Err(STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED) => {}
        Err(status) => check(status),
    }
    let ended = if thread.is_multiple_of(2) {
        io.commit_transaction(transaction)
    } else {
        io.rollback_transaction(transaction)
    };
    // A filter may roll a commit back (FltRollbackEnlistment).
    if ended != STATUS_TRANSACTION_ABORTED {
        check(ended);
    }
    unexpected
}
