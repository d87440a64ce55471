//! Helpers shared by the integration tests of the `vigil` package. Host-only.

pub mod pe_patch;
