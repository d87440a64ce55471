//! Events, waits, delays and time: `KeInitializeEvent`, `KeSetEvent`, `KeClearEvent`,
//! `KeReadStateEvent`, `KeWaitForSingleObject`, `KeDelayExecutionThread`,
//! `KeQuerySystemTimePrecise`.
//!
//! Event state lives in the driver's own `KEVENT` (its `SignalState`), changed atomically;
//! then the run's dispatcher is notified; waiters sleep on its condition variable.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use vigil_sys::{
    APC_LEVEL, BOOLEAN, DISPATCH_LEVEL, EVENT_TYPE, KEVENT, KPRIORITY, KPROCESSOR_MODE,
    KWAIT_REASON, LARGE_INTEGER, NTSTATUS, NotificationEvent, PVOID, STATUS_SUCCESS,
    STATUS_TIMEOUT, SynchronizationEvent,
};

use crate::kernel::{Kernel, emulate, irql_name, lock};
use crate::machine::guest;
use crate::machine::state;
use crate::ntoskrnl::exports::Routine;
use crate::report::ViolationKind;

/// 100 ns intervals between 1601-01-01 and 1970-01-01.
const EPOCH_DIFFERENCE_100NS: i64 = 116_444_736_000_000_000;
/// `KEVENT`'s size in 32-bit words, as `KeInitializeEvent` writes it in the header.
const KEVENT_SIZE_IN_DWORDS: u8 = 6;
const _: () = assert!(size_of::<KEVENT>() == 24);

/// The system time in 100 ns units since 1601.
pub(crate) fn system_time_100ns() -> i64 {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    EPOCH_DIFFERENCE_100NS + i64::try_from(since_unix.as_nanos() / 100).unwrap_or(i64::MAX)
}

/// A kernel timeout value as a deadline: negative = relative 100 ns, positive = absolute
/// system time, zero = now.
pub(crate) fn deadline_of(value: LARGE_INTEGER) -> Instant {
    let now = Instant::now();
    let hundreds = if value <= 0 {
        value.unsigned_abs()
    } else {
        u64::try_from(value - system_time_100ns()).unwrap_or(0)
    };
    now + Duration::from_nanos(hundreds.saturating_mul(100))
}

fn wait_list_head(event: *mut KEVENT) -> usize {
    event as usize
        + std::mem::offset_of!(KEVENT, Header)
        + std::mem::offset_of!(vigil_sys::DISPATCHER_HEADER, WaitListHead)
}

fn signal_state(event: *mut KEVENT) -> *mut i32 {
    (event as usize + std::mem::offset_of!(vigil_sys::DISPATCHER_HEADER, SignalState)) as *mut i32
}

/// Checks that `event` points at an initialized event; returns its type. Reads the driver's
/// memory before any lock is taken (a wild pointer faults here, holding nothing).
fn validate_event(k: &Kernel, event: *mut KEVENT, routine: &str) -> Option<EVENT_TYPE> {
    if event.is_null() {
        k.violation(
            ViolationKind::Parameter,
            format!("{routine}: a valid KEVENT"),
            "Event is NULL".to_owned(),
        );
        return None;
    }
    if !event.is_aligned() {
        k.violation(
            ViolationKind::Parameter,
            format!("{routine}: a KEVENT in aligned non-paged memory"),
            format!("misaligned KEVENT {event:p}"),
        );
        return None;
    }
    let value = guest::read(event);
    let kind = EVENT_TYPE::from(value.Header.Lock.to_le_bytes()[0]);
    let initialized = (kind == NotificationEvent || kind == SynchronizationEvent)
        && value.Header.WaitListHead.Flink as usize == wait_list_head(event);
    if !initialized {
        k.violation(
            ViolationKind::Parameter,
            format!("{routine}: a KEVENT initialized by KeInitializeEvent"),
            format!(
                "KEVENT {event:p} is not initialized (type byte {kind}, WaitListHead.Flink {:p})",
                value.Header.WaitListHead.Flink
            ),
        );
        return None;
    }
    Some(kind)
}

/// `KeInitializeEvent`: any IRQL.
pub(crate) extern "win64" fn ke_initialize_event(
    event: *mut KEVENT,
    kind: EVENT_TYPE,
    signalled: BOOLEAN,
) {
    emulate(Routine::KeInitializeEvent, |k| {
        if event.is_null() || !event.is_aligned() {
            k.violation(
                ViolationKind::Parameter,
                "KeInitializeEvent: a KEVENT in aligned non-paged memory",
                format!("Event {event:p}"),
            );
            return;
        }
        if kind != NotificationEvent && kind != SynchronizationEvent {
            k.violation(
                ViolationKind::Parameter,
                "KeInitializeEvent: NotificationEvent or SynchronizationEvent",
                format!("Type {kind}"),
            );
        }
        let type_byte = u8::try_from(kind).unwrap_or(0);
        let head = wait_list_head(event) as *mut vigil_sys::LIST_ENTRY;
        guest::write(
            event,
            KEVENT {
                Header: vigil_sys::DISPATCHER_HEADER {
                    Lock: i32::from_le_bytes([type_byte, 0, KEVENT_SIZE_IN_DWORDS, 0]),
                    SignalState: i32::from(signalled != 0),
                    WaitListHead: vigil_sys::LIST_ENTRY {
                        Flink: head,
                        Blink: head,
                    },
                },
            },
        );
    });
}

/// `KeSetEvent`: IRQL <= DISPATCH_LEVEL (<= APC_LEVEL when `Wait` is TRUE). Returns the
/// previous state.
pub(crate) extern "win64" fn ke_set_event(
    event: *mut KEVENT,
    _increment: KPRIORITY,
    wait: BOOLEAN,
) -> i32 {
    emulate(Routine::KeSetEvent, |k| {
        if wait != 0 && state::current_irql() > APC_LEVEL {
            k.violation(
                ViolationKind::Irql,
                "KeSetEvent: IRQL <= APC_LEVEL when Wait is TRUE",
                format!("called at {}", irql_name(state::current_irql())),
            );
        }
        if validate_event(k, event, "KeSetEvent").is_none() {
            return 0;
        }
        let Some(word) = guest::atomic_i32(signal_state(event)) else {
            return 0;
        };
        let previous = word.swap(1, Ordering::AcqRel);
        k.notify_waiters();
        previous
    })
}

/// `KeClearEvent`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn ke_clear_event(event: *mut KEVENT) {
    emulate(Routine::KeClearEvent, |k| {
        if validate_event(k, event, "KeClearEvent").is_some()
            && let Some(word) = guest::atomic_i32(signal_state(event))
        {
            word.store(0, Ordering::Release);
        }
    });
}

/// `KeReadStateEvent`: IRQL <= DISPATCH_LEVEL.
pub(crate) extern "win64" fn ke_read_state_event(event: *mut KEVENT) -> i32 {
    emulate(Routine::KeReadStateEvent, |k| {
        if validate_event(k, event, "KeReadStateEvent").is_none() {
            return 0;
        }
        guest::atomic_i32(signal_state(event)).map_or(0, |w| w.load(Ordering::Acquire))
    })
}

/// `KeWaitForSingleObject` on an event or a thread object: IRQL <= APC_LEVEL, or <=
/// DISPATCH_LEVEL with a zero timeout. `STATUS_SUCCESS` or `STATUS_TIMEOUT`.
pub(crate) extern "win64" fn ke_wait_for_single_object(
    object: PVOID,
    _reason: KWAIT_REASON,
    _mode: KPROCESSOR_MODE,
    _alertable: BOOLEAN,
    timeout: *mut LARGE_INTEGER,
) -> NTSTATUS {
    emulate(Routine::KeWaitForSingleObject, |k| {
        let timeout_value = (!timeout.is_null()).then(|| guest::read(timeout));
        let irql = state::current_irql();
        let limit = if timeout_value == Some(0) {
            DISPATCH_LEVEL
        } else {
            APC_LEVEL
        };
        if irql > limit {
            k.violation(
                ViolationKind::Irql,
                format!(
                    "KeWaitForSingleObject: IRQL <= {} for {}",
                    irql_name(limit),
                    if limit == DISPATCH_LEVEL {
                        "a zero timeout"
                    } else {
                        "a non-zero timeout"
                    }
                ),
                format!("called at {}", irql_name(irql)),
            );
        }
        if timeout.is_null() && k.config.flag_infinite_waits {
            k.violation(
                ViolationKind::Policy,
                "RULES.md 7: every wait has a finite timeout",
                "KeWaitForSingleObject with a NULL Timeout (waits forever)".to_owned(),
            );
        }
        let deadline = timeout_value.map(deadline_of);
        let thread = lock(&k.objects).threads.get(&(object as usize)).cloned();
        let satisfied = if let Some(thread) = thread {
            k.wait_until(deadline, "KeWaitForSingleObject on a thread", || {
                thread.is_finished()
            })
        } else {
            let event = object.cast::<KEVENT>();
            let Some(kind) = validate_event(k, event, "KeWaitForSingleObject") else {
                return vigil_sys::STATUS_INVALID_PARAMETER;
            };
            let Some(word) = guest::atomic_i32(signal_state(event)) else {
                return vigil_sys::STATUS_INVALID_PARAMETER;
            };
            k.wait_until(deadline, "KeWaitForSingleObject on an event", || {
                if kind == SynchronizationEvent {
                    word.compare_exchange(1, 0, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                } else {
                    word.load(Ordering::Acquire) != 0
                }
            })
        };
        if satisfied {
            STATUS_SUCCESS
        } else {
            STATUS_TIMEOUT
        }
    })
}

/// `KeDelayExecutionThread`: IRQL <= APC_LEVEL.
pub(crate) extern "win64" fn ke_delay_execution_thread(
    _mode: KPROCESSOR_MODE,
    _alertable: BOOLEAN,
    interval: *mut LARGE_INTEGER,
) -> NTSTATUS {
    emulate(Routine::KeDelayExecutionThread, |k| {
        if interval.is_null() {
            k.violation(
                ViolationKind::Parameter,
                "KeDelayExecutionThread: a valid Interval",
                "Interval is NULL".to_owned(),
            );
            return vigil_sys::STATUS_INVALID_PARAMETER;
        }
        let deadline = deadline_of(guest::read(interval));
        // Sleeping is a wait that nothing satisfies early; the hang limit still applies.
        k.wait_until(Some(deadline), "KeDelayExecutionThread", || false);
        STATUS_SUCCESS
    })
}

/// `KeQuerySystemTimePrecise`: any IRQL.
pub(crate) extern "win64" fn ke_query_system_time_precise(time: *mut LARGE_INTEGER) {
    emulate(Routine::KeQuerySystemTimePrecise, |_| {
        guest::write(time, system_time_100ns());
    });
}
