//! Shared by the synthetic I/O tests: a run configuration with NTFS, FAT and named-pipe
//! volumes, and a workload that exercises every operation Vigil watches.

#![allow(dead_code, reason = "each test binary uses a subset of these helpers")]

use vigil_kernel_sim::{Driver, Io, IoConfig, Requestor, SimConfig, VolumeId, VolumeKind};

pub const NTFS: &str = r"\Device\HarddiskVolume1";
pub const FAT: &str = r"\Device\HarddiskVolume2";
pub const PIPE: &str = r"\Device\NamedPipe";

pub const STATUS_SUCCESS: i32 = 0;
pub const STATUS_OBJECT_NAME_NOT_FOUND: i32 = 0xC000_0034_u32.cast_signed();
pub const STATUS_OBJECT_NAME_COLLISION: i32 = 0xC000_0035_u32.cast_signed();
pub const STATUS_DELETE_PENDING: i32 = 0xC000_0056_u32.cast_signed();

pub const FILE_SUPERSEDE: u32 = 0;
pub const FILE_OPEN: u32 = 1;
pub const FILE_CREATE: u32 = 2;
pub const FILE_OPEN_IF: u32 = 3;
pub const FILE_OVERWRITE: u32 = 4;
pub const FILE_OVERWRITE_IF: u32 = 5;
pub const FILE_DIRECTORY_FILE: u32 = 0x1;
pub const FILE_DELETE_ON_CLOSE: u32 = 0x1000;
pub const FILE_DISPOSITION_DELETE: u32 = 0x1;
pub const FILE_DISPOSITION_POSIX_SEMANTICS: u32 = 0x2;
pub const FILE_DISPOSITION_ON_CLOSE: u32 = 0x8;
pub const GENERIC_WRITE: u32 = 0x4000_0000;

/// NTFS, FAT and a named-pipe volume, mounted before the driver loads.
pub fn config() -> SimConfig {
    SimConfig {
        io: IoConfig {
            volumes: vec![
                (VolumeKind::Ntfs, NTFS.to_owned()),
                (VolumeKind::Fat, FAT.to_owned()),
                (VolumeKind::NamedPipe, PIPE.to_owned()),
            ],
            ..IoConfig::default()
        },
        ..SimConfig::default()
    }
}

pub fn volume(driver: &Driver, name: &str) -> VolumeId {
    driver.volume(name).expect("mounted")
}

/// Creates, writes (twice per handle), renames, links (where supported), deletes by both
/// disposition classes and by delete-on-close, cleans up and closes, under `\<dir>` on
/// `volume`; `rounds` files. Asserts the file system's answers.
pub fn workload(io: &Io, volume: VolumeId, dir: &str, rounds: usize, hard_links: bool) {
    let d = io
        .create(
            volume,
            &format!(r"\{dir}"),
            FILE_OPEN_IF,
            FILE_DIRECTORY_FILE,
            0,
        )
        .expect("directory");
    io.cleanup(&d);
    io.close(d);
    for n in 0..rounds {
        let path = format!(r"\{dir}\File{n}.txt");
        let f = io
            .create(volume, &path, FILE_CREATE, 0, GENERIC_WRITE)
            .expect("create");
        assert_eq!(f.information(), 2, "FILE_CREATED");
        assert_eq!(io.write(&f, 0, b"hello"), STATUS_SUCCESS);
        assert_eq!(io.write(&f, 5, b" world"), STATUS_SUCCESS);
        assert_eq!(
            io.create(volume, &path, FILE_CREATE, 0, 0).err(),
            Some(STATUS_OBJECT_NAME_COLLISION)
        );
        let renamed = format!("Renamed{n}.txt");
        assert_eq!(io.rename(&f, &renamed, false), STATUS_SUCCESS);
        if hard_links {
            assert_eq!(
                io.link(&f, &format!(r"\{dir}\Link{n}.txt"), false),
                STATUS_SUCCESS
            );
            assert_eq!(
                io.link_ex(&f, &format!(r"\{dir}\Link{n}.txt"), 0),
                STATUS_OBJECT_NAME_COLLISION
            );
        }
        match n % 3 {
            0 => assert_eq!(io.set_disposition(&f, true), STATUS_SUCCESS),
            1 => assert_eq!(
                io.set_disposition_ex(
                    &f,
                    FILE_DISPOSITION_DELETE | FILE_DISPOSITION_POSIX_SEMANTICS
                ),
                STATUS_SUCCESS
            ),
            _ => assert_eq!(
                io.set_disposition_ex(&f, FILE_DISPOSITION_DELETE | FILE_DISPOSITION_ON_CLOSE),
                STATUS_SUCCESS
            ),
        }
        assert_eq!(io.cleanup(&f), STATUS_SUCCESS);
        io.close(f);
        assert_eq!(
            io.create(volume, &format!(r"\{dir}\{renamed}"), FILE_OPEN, 0, 0)
                .err(),
            Some(STATUS_OBJECT_NAME_NOT_FOUND),
            "deleted"
        );
        // Opens of an existing file, overwrite, supersede, delete-on-close.
        let g = io
            .create(
                volume,
                &path,
                FILE_OVERWRITE_IF,
                FILE_DELETE_ON_CLOSE,
                GENERIC_WRITE,
            )
            .expect("overwrite_if creates");
        assert_eq!(g.information(), 2);
        assert_eq!(io.write(&g, 0, b"x"), STATUS_SUCCESS);
        io.cleanup(&g);
        io.close(g);
    }
}

/// A requestor with ids derived from `n`.
pub fn requestor(n: u32) -> Requestor {
    Requestor {
        pid: 1000 + n,
        tid: 5000 + n,
    }
}
