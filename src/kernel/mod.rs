//! Safe wrappers over the kernel routines declared in `vigil-sys`. Runs in the kernel; each
//! wrapper states the IRQL it may be called at.
//!
//! Raw FFI is called only here (and in `crate::filter`, for the Filter Manager); the rest of the
//! driver uses these types.

pub mod device;
pub mod event;
pub mod irql;
pub mod pool;
pub mod time;
pub mod user_buffer;
