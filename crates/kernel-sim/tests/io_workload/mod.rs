//! Shared by the synthetic I/O tests: a run configuration with NTFS, FAT and named-pipe
//! volumes, and a workload that exercises every operation Vigil watches.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a subset of these helpers and re-exported constants"
)]

use vigil_kernel_sim::{Driver, Io, IoConfig, Requestor, SimConfig, VolumeId, VolumeKind};

pub use vigil_kernel_sim::fixtures::{FAT, NTFS, PIPE};
pub use vigil_sys::{
    FILE_CREATE, FILE_DELETE_ON_CLOSE, FILE_DIRECTORY_FILE, FILE_DISPOSITION_DELETE,
    FILE_DISPOSITION_ON_CLOSE, FILE_DISPOSITION_POSIX_SEMANTICS, FILE_OPEN, FILE_OPEN_IF,
    FILE_OVERWRITE, FILE_OVERWRITE_IF, FILE_SUPERSEDE, GENERIC_WRITE, STATUS_DELETE_PENDING,
    STATUS_OBJECT_NAME_COLLISION, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS,
};

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
