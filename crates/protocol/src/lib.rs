#![no_std]
//! Vigil's wire protocol: every byte that crosses the communication port, validated (skeleton; filled in by its own issue).
