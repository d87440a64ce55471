//! Shared by the service's integration tests: the in-memory fake driver. Included with
//! `mod common;` by each test file.

pub mod fake;
