//! Parameter rules of emulated routines, one line each.
//!
//! `check!(k, condition, "rule" => STATUS, "message {}", args)`: when `condition` is false, the
//! routine in progress records a [`ViolationKind::Parameter`](crate::report::ViolationKind)
//! whose rule is `"<Routine>: rule"` and returns `STATUS` from the enclosing `emulate` body.
//! `reject!` is the same without a condition, for a rule found broken in a `let ... else` or a
//! `match`. The routine's name comes from the thread state `emulate` set, so it is written only
//! in the routine table.

use crate::kernel::Kernel;
use crate::machine::state;
use crate::report::ViolationKind;

impl Kernel {
    /// Records a broken parameter rule of the emulated routine in progress (`check!`).
    pub(crate) fn parameter_violation(&self, rule: &str, message: String) {
        let routine = state::with(|s| s.routine.get());
        self.violation(
            ViolationKind::Parameter,
            format!("{routine}: {rule}"),
            message,
        );
    }
}

/// Records a broken parameter rule and returns `$status` (see the module docs).
macro_rules! reject {
    ($k:expr, $rule:expr => $status:expr, $($message:tt)+) => {{
        $k.parameter_violation($rule, format!($($message)+));
        return $status;
    }};
}

/// Checks one parameter rule: unless `$ok`, records it broken and returns `$status` (see the
/// module docs).
macro_rules! check {
    ($k:expr, $ok:expr, $rule:expr => $status:expr, $($message:tt)+) => {
        if !($ok) {
            $crate::kernel::check::reject!($k, $rule => $status, $($message)+);
        }
    };
}

pub(crate) use {check, reject};
