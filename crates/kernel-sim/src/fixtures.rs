//! The synthetic machine every test, bench and demo builds the same way: the NT device names of
//! its volumes. One home for them, so that the root `tests/`, kernel-sim's own tests, the driver
//! bench and `vigil-demo` agree on what `\Device\HarddiskVolume1` is. User mode (Linux).
//!
//! Windows constants (NTSTATUS values, create dispositions and options, access masks, file
//! information classes) are not repeated here: they come from `vigil-sys`, under their C names.
//! This module holds only what kernel-sim's world invents, and imports nothing from the rest of
//! the crate.

/// The NTFS volume (hard links, file ids): mounted with `VolumeKind::Ntfs`.
pub const NTFS: &str = r"\Device\HarddiskVolume1";
/// The FAT volume (no hard links): mounted with `VolumeKind::Fat`.
pub const FAT: &str = r"\Device\HarddiskVolume2";
/// The named-pipe file system (`VolumeKind::NamedPipe`).
pub const PIPE: &str = r"\Device\NamedPipe";
/// The network redirector (`VolumeKind::Network`).
pub const NETWORK: &str = r"\Device\Mup";
