#![no_std]
//! Vigil's portable synchronization core: unload gate, client-port slot, event ring (skeleton; filled in by its own issue).
