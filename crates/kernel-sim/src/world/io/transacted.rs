//! Transactions in the synthetic workload: a requestor begins a transaction, makes it its
//! current one (as `RtlSetCurrentTransaction` does for a thread) so that its creates are
//! transacted, and commits or rolls it back; Filter Manager's side (contexts, enlistments,
//! notifications) is `fltmgr::transactions`.
//!
//! Only NTFS supports transactions (`TxF`). On any other volume a transacted create that asks
//! for write access fails with `STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED` before it reaches the
//! file system stack (so no filter sees it), and one for read access goes ahead untransacted,
//! as the `TxF` scenarios page allows reads of files on non-transacted volumes
//! (<https://learn.microsoft.com/previous-versions/aa365677(v=vs.85)>). Which NTSTATUS the
//! refusal carries is not on a reference page kernel-sim can cite: the one whose message is
//! "This object is not allowed to be opened in a transaction" is used. Operations on a file
//! object opened in a transaction carry it in `FLT_RELATED_OBJECTS::Transaction` while the
//! transaction is in progress (NULL once it is over).

use std::mem::offset_of;
use std::sync::atomic::Ordering;

use vigil_sys::{DELETE, FILE_WRITE_DATA, FLT_RELATED_OBJECTS, GENERIC_WRITE, NTSTATUS, PVOID};

use super::{BlockAddresses, Io};
use crate::config::VolumeKind;
use crate::fltmgr::instances::VolumeId;
use crate::fltmgr::{flt_read, transactions};
use crate::machine::guest;

/// `STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED`.
pub(crate) const STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED: NTSTATUS = 0xC019_003F_u32.cast_signed();

/// Access rights that change a file: `GENERIC_WRITE`, `GENERIC_ALL`, `FILE_WRITE_DATA`,
/// `FILE_APPEND_DATA`, `FILE_WRITE_EA`, `FILE_WRITE_ATTRIBUTES`, `DELETE`, `WRITE_DAC`,
/// `WRITE_OWNER`.
const WRITE_ACCESS: u32 = GENERIC_WRITE
    | 0x1000_0000
    | FILE_WRITE_DATA
    | 0x4
    | 0x10
    | 0x100
    | DELETE
    | 0x4_0000
    | 0x8_0000;

/// A transaction begun with [`Io::begin_transaction`], in progress until
/// [`Io::commit_transaction`] or [`Io::rollback_transaction`] takes it.
#[derive(Debug)]
pub struct Transaction {
    address: usize,
}

impl Transaction {
    /// The `PKTRANSACTION` filters see in `FLT_RELATED_OBJECTS::Transaction`.
    pub fn address(&self) -> usize {
        self.address
    }
}

impl Io {
    /// Begins a transaction.
    pub fn begin_transaction(&self) -> Transaction {
        Transaction {
            address: transactions::begin(&self.kernel),
        }
    }

    /// Makes `transaction` this requestor's current one (None: no transaction): its creates
    /// are transacted from now on.
    pub fn set_current_transaction(&self, transaction: Option<&Transaction>) {
        self.transaction.store(
            transaction.map_or(0, Transaction::address),
            Ordering::Release,
        );
    }

    /// Commits `transaction`: the enlisted filters get `TRANSACTION_NOTIFY_PREPREPARE`,
    /// `_PREPARE`, `_COMMIT` and `_COMMIT_FINALIZE` as their masks ask, on this thread.
    /// `STATUS_TRANSACTION_ABORTED` when an enlisted filter rolled it back
    /// (`FltRollbackEnlistment`) before the commit phase: they got `TRANSACTION_NOTIFY_ROLLBACK`.
    pub fn commit_transaction(&self, transaction: Transaction) -> NTSTATUS {
        self.end_transaction(transaction, true)
    }

    /// Rolls `transaction` back: the enlisted filters get `TRANSACTION_NOTIFY_ROLLBACK`.
    pub fn rollback_transaction(&self, transaction: Transaction) -> NTSTATUS {
        self.end_transaction(transaction, false)
    }

    /// Ends `transaction` (it is consumed: its object is gone afterwards).
    #[expect(
        clippy::needless_pass_by_value,
        reason = "ending takes the transaction: its object is gone afterwards"
    )]
    fn end_transaction(&self, transaction: Transaction, commit: bool) -> NTSTATUS {
        let Transaction { address } = transaction;
        let _ = self
            .transaction
            .compare_exchange(address, 0, Ordering::AcqRel, Ordering::Acquire);
        transactions::end(&self.kernel, address, commit)
    }

    /// The transaction a create of `desired_access` on `volume` is made in (0: none), or the
    /// status that refuses it.
    pub(super) fn transaction_for_create(
        &self,
        volume: VolumeId,
        desired_access: u32,
    ) -> Result<usize, NTSTATUS> {
        let transaction = self.transaction.load(Ordering::Acquire);
        if transaction == 0 {
            return Ok(0);
        }
        let flt = flt_read(&self.kernel);
        let ntfs = flt
            .io
            .volumes
            .get(volume.0)
            .is_some_and(|v| v.kind == VolumeKind::Ntfs);
        if ntfs && flt.io.transactions.is_live(transaction) {
            Ok(transaction)
        } else if desired_access & WRITE_ACCESS != 0 {
            Err(STATUS_TRANSACTIONAL_OPEN_NOT_ALLOWED)
        } else {
            Ok(0)
        }
    }

    /// Writes the transaction `file_object` was opened in, while it is in progress, into the
    /// operation's related objects.
    pub(super) fn write_transaction(&self, file_object: usize, at: &BlockAddresses) {
        let flt = flt_read(&self.kernel);
        let transaction = flt
            .io
            .files
            .with(file_object, |r| r.map_or(0, |r| r.transaction));
        if transaction != 0 && flt.io.transactions.is_live(transaction) {
            guest::write(
                (at.objects + offset_of!(FLT_RELATED_OBJECTS, Transaction)) as *mut PVOID,
                transaction as PVOID,
            );
        }
    }
}
