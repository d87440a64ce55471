//! Memory: page mappings, the special pool, and typed access to driver-provided pointers.

pub(crate) mod guest;
pub(crate) mod pages;
pub(crate) mod pool;
