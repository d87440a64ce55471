//! Emulated routines as values, and the macro each exporting module declares its routines
//! with, once, in the spirit of a Wine `.spec` line: name, handler, IRQL rule.
//!
//! [`routines!`](crate::kernel::routine::routines) generates a module's `Routine` enum (one
//! variant per routine, named as exported) and its export table. Each variant converts into a
//! [`Routine`]: a dense index among every routine kernel-sim emulates (the modules' index
//! ranges follow one another), the name and the IRQL rule. [`emulate`](crate::kernel::emulate)
//! takes one, so the name and the rule are written only in the table; the call counters and the
//! pause key on the index. This layer knows no module's routines: the tables sit in the
//! modules above, which hand their routines down as values.

use crate::kernel::IrqlRule;

/// The most routines kernel-sim can emulate, over every module (sizes the call counters; each
/// table checks at compile time that it fits).
pub(crate) const MAX_ROUTINES: usize = 256;

/// One emulated routine, as its module's table declares it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Routine {
    index: u16,
    name: &'static str,
    irql: IrqlRule,
}

impl Routine {
    /// A routine at `index` (below [`MAX_ROUTINES`]); only `routines!` makes these.
    pub(crate) const fn new(index: u16, name: &'static str, irql: IrqlRule) -> Self {
        Self { index, name, irql }
    }

    /// Its index among every emulated routine.
    pub(crate) const fn index(self) -> usize {
        self.index as usize
    }

    /// Its name, as a driver imports it.
    pub(crate) const fn name(self) -> &'static str {
        self.name
    }

    /// The IRQL it may be called at, from its reference page.
    pub(crate) const fn irql(self) -> IrqlRule {
        self.irql
    }
}

impl PartialEq for Routine {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}

impl Eq for Routine {}

/// Declares a module's routines once: `routines { Name => handler, irql_rule; ... }` (the
/// rule an [`IrqlRule`] expression, from the routine's reference page), then optionally
/// `variables { Name => address; ... }` for exported variables. Generates
/// `pub(crate) enum Routine` (with `ALL`, `FIRST`, `END`, `routine()` and
/// `From<Routine> for kernel::routine::Routine`) numbered from `first`, and
/// `pub(crate) const EXPORTS`, the table the loader binds from.
macro_rules! routines {
    (
        $(#[$meta:meta])*
        first $first:expr;
        routines { $( $name:ident => $handler:path, $irql:expr; )* }
        $( variables { $( $var:ident => $address:expr; )* } )?
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        pub(crate) enum Routine {
            $(
                #[doc = concat!("`", stringify!($name), "`.")]
                $name,
            )*
        }

        impl Routine {
            /// Every routine of the table, in its order.
            pub(crate) const ALL: &'static [Self] = &[$(Self::$name),*];

            /// The index of this table's first routine among every emulated routine.
            pub(crate) const FIRST: u16 = $first;

            /// One past this table's last index: where the next module's table starts.
            #[expect(
                clippy::cast_possible_truncation,
                reason = "checked below against MAX_ROUTINES, far below u16::MAX"
            )]
            pub(crate) const END: u16 = Self::FIRST + Self::ALL.len() as u16;

            /// The routine as the kernel layer sees it.
            pub(crate) const fn routine(self) -> $crate::kernel::routine::Routine {
                let (name, irql): (&'static str, $crate::kernel::IrqlRule) = match self {
                    $(Self::$name => (stringify!($name), $irql),)*
                };
                $crate::kernel::routine::Routine::new(Self::FIRST + self as u16, name, irql)
            }
        }

        const _: () = assert!(
            Routine::END as usize <= $crate::kernel::routine::MAX_ROUTINES,
            "raise MAX_ROUTINES"
        );

        impl From<Routine> for $crate::kernel::routine::Routine {
            fn from(routine: Routine) -> Self {
                routine.routine()
            }
        }

        /// The export table: every routine above and every exported variable, by the name a
        /// driver imports, with the address the loader binds.
        pub(crate) const EXPORTS: &[$crate::kernel::Export] = &[
            $((stringify!($name), || $handler as *const () as usize),)*
            $($((stringify!($var), || $address),)*)?
        ];
    };
}

pub(crate) use routines;
