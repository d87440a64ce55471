//! Which volumes Vigil attaches to (RULES.md, rule 23). Portable: the decision is a pure
//! function of the volume's file-system type and the configuration; InstanceSetup applies it.

use vigil_sys::{
    FLT_FILESYSTEM_TYPE, FLT_FSTYPE_EXFAT, FLT_FSTYPE_FAT, FLT_FSTYPE_LANMAN, FLT_FSTYPE_MSFS,
    FLT_FSTYPE_MUP, FLT_FSTYPE_NFS, FLT_FSTYPE_NPFS, FLT_FSTYPE_NTFS, FLT_FSTYPE_RDPDR,
    FLT_FSTYPE_REFS, FLT_FSTYPE_WEBDAV,
};

/// What InstanceSetup does with a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachDecision {
    /// Attach an instance.
    Attach,
    /// Do not attach (`STATUS_FLT_DO_NOT_ATTACH`).
    Decline,
}

/// The class of a volume, as far as the attach policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeClass {
    /// NTFS, ReFS, FAT, exFAT: local disk file systems.
    LocalDisk,
    /// SMB (`LANMAN`), the UNC provider, NFS, `WebDAV`, RDP drive redirection.
    Network,
    /// Named pipes and mailslots: not files; never watched.
    PipeOrMailslot,
    /// Anything else (RAW, CD/UDF media, unknown third-party file systems).
    Other,
}

/// Classifies a file-system type.
pub fn classify(fs_type: FLT_FILESYSTEM_TYPE) -> VolumeClass {
    match fs_type {
        FLT_FSTYPE_NTFS | FLT_FSTYPE_REFS | FLT_FSTYPE_FAT | FLT_FSTYPE_EXFAT => {
            VolumeClass::LocalDisk
        }
        FLT_FSTYPE_LANMAN | FLT_FSTYPE_MUP | FLT_FSTYPE_NFS | FLT_FSTYPE_WEBDAV
        | FLT_FSTYPE_RDPDR => VolumeClass::Network,
        FLT_FSTYPE_NPFS | FLT_FSTYPE_MSFS => VolumeClass::PipeOrMailslot,
        _ => VolumeClass::Other,
    }
}

/// The attach policy.
///
/// * Local disk file systems: always — that is where the activity to report happens.
/// * Network volumes: only when configured — their latency and failure modes are not the local
///   machine's, and many deployments watch the file server itself instead.
/// * Named pipes and mailslots: never — they are inter-process communication, not files.
/// * Anything else: never — read-only media and unknown file systems are out of scope.
pub fn decide(fs_type: FLT_FILESYSTEM_TYPE, attach_network: bool) -> AttachDecision {
    match classify(fs_type) {
        VolumeClass::LocalDisk => AttachDecision::Attach,
        VolumeClass::Network if attach_network => AttachDecision::Attach,
        VolumeClass::Network | VolumeClass::PipeOrMailslot | VolumeClass::Other => {
            AttachDecision::Decline
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sys::{FLT_FSTYPE_CDFS, FLT_FSTYPE_RAW, FLT_FSTYPE_UNKNOWN};

    #[test]
    fn local_disks_always_attach() {
        for fs in [
            FLT_FSTYPE_NTFS,
            FLT_FSTYPE_REFS,
            FLT_FSTYPE_FAT,
            FLT_FSTYPE_EXFAT,
        ] {
            assert_eq!(decide(fs, false), AttachDecision::Attach);
            assert_eq!(decide(fs, true), AttachDecision::Attach);
        }
    }

    #[test]
    fn network_only_when_configured() {
        for fs in [
            FLT_FSTYPE_LANMAN,
            FLT_FSTYPE_MUP,
            FLT_FSTYPE_NFS,
            FLT_FSTYPE_WEBDAV,
            FLT_FSTYPE_RDPDR,
        ] {
            assert_eq!(decide(fs, false), AttachDecision::Decline);
            assert_eq!(decide(fs, true), AttachDecision::Attach);
        }
    }

    #[test]
    fn pipes_mailslots_and_others_never() {
        for fs in [
            FLT_FSTYPE_NPFS,
            FLT_FSTYPE_MSFS,
            FLT_FSTYPE_RAW,
            FLT_FSTYPE_CDFS,
            FLT_FSTYPE_UNKNOWN,
        ] {
            assert_eq!(decide(fs, true), AttachDecision::Decline);
        }
    }
}
