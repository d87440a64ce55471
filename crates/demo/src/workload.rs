//! The scripted workload of `vigil-demo` and the end-to-end tests: several processes and
//! threads ([`Actor`]) doing I/O on the machine's volumes, each knowing which events the driver
//! must report for it and which operations it must refuse ([`phase_one`], [`phase_two`]), and
//! the demo's policy that protects a tree. Linux only; user mode (host threads).

use std::collections::HashSet;
use std::time::Duration;

use vigil_kernel_sim::fixtures::{FAT, NTFS};
use vigil_kernel_sim::{Driver, FileHandle, Io, NewProcess, Requestor, VolumeId};
use vigil_sys::{
    FILE_CREATE, FILE_DELETE_ON_CLOSE, FILE_DIRECTORY_FILE, FILE_OPEN, FILE_OPEN_IF, GENERIC_READ,
    GENERIC_WRITE, STATUS_ACCESS_DENIED,
};

use crate::machine::Volumes;
use crate::service_thread::{IMAGE_DIR, NameTable};

/// An event the driver must report for the workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedEvent {
    /// `open`, `first_write`, `rename`, `hard_link`, `delete`, `close_modified`.
    pub kind: &'static str,
    /// Full NT path.
    pub path: String,
    /// The new name of a rename or link.
    pub target: Option<String>,
    /// Requesting process.
    pub pid: u32,
    /// Requesting thread.
    pub tid: u32,
}

/// A file the actor has open, with its current name.
pub struct OpenFile {
    handle: FileHandle,
    path: String,
}

/// One thread of a simulated process issuing I/O on one volume, recording the events the
/// driver must report and the operations it refused.
pub struct Actor {
    io: Io,
    volume: VolumeId,
    device: &'static str,
    pace: Duration,
    wrote: HashSet<usize>,
    /// Events the driver must report, in this thread's order.
    pub expected: Vec<ExpectedEvent>,
    /// Operations refused with `STATUS_ACCESS_DENIED`: `(operation, path)`.
    pub denied: Vec<(&'static str, String)>,
}

impl Actor {
    /// Thread `tid` of process `pid` on `volume` (`device` is its NT name), sleeping `pace`
    /// after each operation.
    pub fn new(
        driver: &Driver,
        (pid, tid): (u32, u32),
        volume: VolumeId,
        device: &'static str,
        pace: Duration,
    ) -> Self {
        Self {
            io: driver.io(Requestor { pid, tid }),
            volume,
            device,
            pace,
            wrote: HashSet::new(),
            expected: Vec::new(),
            denied: Vec::new(),
        }
    }

    fn full(&self, path: &str) -> String {
        format!("{}{path}", self.device)
    }

    fn expect(&mut self, kind: &'static str, path: String, target: Option<String>) {
        let Requestor { pid, tid } = self.io.requestor();
        self.expected.push(ExpectedEvent {
            kind,
            path,
            target,
            pid,
            tid,
        });
    }

    fn pause(&self) {
        if !self.pace.is_zero() {
            std::thread::sleep(self.pace);
        }
    }

    /// Creates or opens `path` (volume-relative).
    ///
    /// # Errors
    ///
    /// The create's status (a denied one is recorded).
    pub fn create(
        &mut self,
        path: &str,
        disposition: u32,
        options: u32,
        access: u32,
    ) -> Result<OpenFile, i32> {
        let result = self
            .io
            .create(self.volume, path, disposition, options, access);
        match &result {
            Ok(_) => self.expect("open", self.full(path), None),
            Err(status) if *status == STATUS_ACCESS_DENIED => {
                self.denied.push(("create", self.full(path)));
            }
            Err(_) => {}
        }
        self.pause();
        result.map(|handle| OpenFile {
            handle,
            path: path.to_owned(),
        })
    }

    /// Opens (or creates) directory `path`, and closes it.
    ///
    /// # Panics
    ///
    /// When the file system refuses.
    pub fn directory(&mut self, path: &str) {
        let dir = self
            .create(path, FILE_OPEN_IF, FILE_DIRECTORY_FILE, GENERIC_READ)
            .expect("directory");
        self.close(dir);
    }

    /// Writes `data` at `offset`: the handle's first write is an event.
    pub fn write(&mut self, file: &OpenFile, offset: u64, data: &[u8]) -> i32 {
        let status = self.io.write(&file.handle, offset, data);
        if status == 0 && self.wrote.insert(file.handle.file_object()) {
            self.expect("first_write", self.full(&file.path), None);
        }
        self.pause();
        status
    }

    /// Renames `file` to `target` (volume-relative).
    pub fn rename(&mut self, file: &mut OpenFile, target: &str) -> i32 {
        let status = self.io.rename(&file.handle, target, false);
        if status == 0 {
            self.expect("rename", self.full(&file.path), Some(self.full(target)));
            target.clone_into(&mut file.path);
        } else if status == STATUS_ACCESS_DENIED {
            self.denied.push((
                "rename",
                format!("{} -> {}", self.full(&file.path), self.full(target)),
            ));
        }
        self.pause();
        status
    }

    /// A hard link `target` to `file` (NTFS).
    pub fn link(&mut self, file: &OpenFile, target: &str) -> i32 {
        let status = self.io.link(&file.handle, target, false);
        if status == 0 {
            self.expect("hard_link", self.full(&file.path), Some(self.full(target)));
        } else if status == STATUS_ACCESS_DENIED {
            self.denied.push((
                "link",
                format!("{} -> {}", self.full(&file.path), self.full(target)),
            ));
        }
        self.pause();
        status
    }

    /// Marks `file` for deletion (`FileDispositionInformation`).
    pub fn delete(&mut self, file: &OpenFile) -> i32 {
        let status = self.io.set_disposition(&file.handle, true);
        if status == 0 {
            self.expect("delete", self.full(&file.path), None);
        } else if status == STATUS_ACCESS_DENIED {
            self.denied.push(("delete", self.full(&file.path)));
        }
        self.pause();
        status
    }

    /// Cleanup and close: a handle that wrote reports `close_modified`.
    pub fn close(&mut self, file: OpenFile) {
        let status = self.io.cleanup(&file.handle);
        if status == 0 && self.wrote.remove(&file.handle.file_object()) {
            self.expect("close_modified", self.full(&file.path), None);
        }
        self.io.close(file.handle);
        self.pause();
    }
}

/// What a workload phase did.
#[derive(Debug, Default)]
pub struct WorkloadOutcome {
    /// Per thread, the events the driver must report, in that thread's order.
    pub expected: Vec<Vec<ExpectedEvent>>,
    /// Operations refused: `(pid, operation, path)`.
    pub denied: Vec<(u32, &'static str, String)>,
}

impl WorkloadOutcome {
    fn add(&mut self, actor: Actor) {
        let pid = actor.io.requestor().pid;
        self.denied
            .extend(actor.denied.into_iter().map(|(op, path)| (pid, op, path)));
        self.expected.push(actor.expected);
    }

    /// Every expected event.
    pub fn event_count(&self) -> usize {
        self.expected.iter().map(Vec::len).sum()
    }

    fn merge(&mut self, other: Self) {
        self.expected.extend(other.expected);
        self.denied.extend(other.denied);
    }
}

/// The processes of the workload: `(pid, image name, thread ids)`.
pub const PROCESSES: &[(u32, &str, &[u32])] = &[
    (1204, "editor.exe", &[1210, 1211]),
    (2310, "build.exe", &[2311, 2312]),
    (3100, "backup.exe", &[3101]),
    (6660, "intruder.exe", &[6661]),
];

/// The session manager's process id, the parent of the workload's processes.
const PARENT_PID: u32 = 612;

/// Starts the processes of [`PROCESSES`]: the driver's process-notify routine sees each
/// creation (its image in [`IMAGE_DIR`]), so their events carry a process key the service
/// resolves to the image, parent, user and session.
///
/// # Panics
///
/// When a pid is in use (the workload runs once per load).
pub fn start_processes(driver: &Driver) {
    for &(pid, name, _) in PROCESSES {
        let process = NewProcess::new(pid, PARENT_PID, &format!("{IMAGE_DIR}\\{name}"));
        driver.start_process(&process).expect("a free pid");
    }
}

/// The processes of [`PROCESSES`] exit (the driver sends their exit records).
pub fn exit_processes(driver: &Driver) {
    for &(pid, _, _) in PROCESSES {
        driver.exit_process(pid);
    }
}

/// The image names of [`PROCESSES`], for the service's `except_processes`.
pub fn process_names() -> NameTable {
    NameTable(
        PROCESSES
            .iter()
            .map(|&(pid, name, _)| (pid, name))
            .collect(),
    )
}

/// The protected tree of the demo's policy.
pub const SECRET: &str = r"\Secret";

/// The demo's policy: `\Device\HarddiskVolume1\Secret` denied to everyone but `backup.exe`.
pub fn demo_policy_toml(default_verdict: &str) -> String {
    format!(
        r#"# vigil-demo's policy (written by the demo).
[driver]
default_verdict = "{default_verdict}"   # no answer from the service: "allow" = fail-open
verdict_timeout_ms = 1000
send_timeout_ms = 1000
batch_size = 8

[[rule]]
prefix = '{NTFS}{SECRET}'
verdict = "deny"
except_processes = ['{IMAGE_DIR}\backup.exe']
"#
    )
}

/// Phase one: an editor (two threads) on NTFS, a build (two threads) on FAT, and a backup
/// that fills `\Secret` before an intruder tries to get into it (denied six ways: an open, a
/// create, the file's `::$DATA` stream, an alternate data stream, a hard link and a rename
/// into the tree), all at once.
///
/// # Panics
///
/// When the file system refuses an operation the script expects to succeed.
pub fn phase_one(driver: &Driver, volumes: Volumes, pace: Duration) -> WorkloadOutcome {
    start_processes(driver);
    let mut outcome = WorkloadOutcome::default();
    std::thread::scope(|s| {
        let editor_a = s.spawn(|| {
            let mut a = Actor::new(driver, (1204, 1210), volumes.ntfs, NTFS, pace);
            a.directory(r"\Docs");
            let mut f = a
                .create(r"\Docs\report.docx", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("create");
            for n in 0..3u64 {
                a.write(&f, n * 512, &[b'r'; 512]);
            }
            a.rename(&mut f, r"\Docs\report-final.docx");
            a.close(f);
            a
        });
        let editor_b = s.spawn(|| {
            let mut a = Actor::new(driver, (1204, 1211), volumes.ntfs, NTFS, pace);
            a.directory(r"\Notes");
            let f = a
                .create(r"\Notes\todo.txt", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("create");
            a.write(&f, 0, b"- ship the demo\n");
            a.link(&f, r"\Notes\todo-link.txt");
            a.close(f);
            let g = a
                .create(r"\Notes\todo-link.txt", FILE_OPEN, 0, GENERIC_WRITE)
                .expect("open the link");
            a.delete(&g);
            a.close(g);
            a
        });
        let build_a = s.spawn(|| {
            let mut a = Actor::new(driver, (2310, 2311), volumes.fat, FAT, pace);
            a.directory(r"\obj");
            for n in 0..3 {
                let f = a
                    .create(&format!(r"\obj\unit{n}.o"), FILE_CREATE, 0, GENERIC_WRITE)
                    .expect("create");
                a.write(&f, 0, &[0x7f; 64]);
                a.close(f);
            }
            a
        });
        let build_b = s.spawn(|| {
            let mut a = Actor::new(driver, (2310, 2312), volumes.fat, FAT, pace);
            a.directory(r"\bin");
            let mut f = a
                .create(r"\bin\app.tmp", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("create");
            a.write(&f, 0, &[0x4d; 256]);
            a.write(&f, 256, &[0x5a; 256]);
            a.rename(&mut f, r"\bin\app.exe");
            a.close(f);
            let t = a
                .create(
                    r"\bin\scratch.tmp",
                    FILE_CREATE,
                    FILE_DELETE_ON_CLOSE,
                    GENERIC_WRITE,
                )
                .expect("create");
            a.close(t);
            a
        });
        let secret = s.spawn(|| {
            let mut backup = Actor::new(driver, (3100, 3101), volumes.ntfs, NTFS, pace);
            backup.directory(SECRET);
            let f = backup
                .create(r"\Secret\vault.kdbx", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("backup.exe is excepted");
            backup.write(&f, 0, &[0xAA; 128]);
            backup.close(f);
            let mut intruder = Actor::new(driver, (6660, 6661), volumes.ntfs, NTFS, pace);
            intruder.directory(r"\Temp");
            let _ = intruder.create(r"\Secret\vault.kdbx", FILE_OPEN, 0, GENERIC_READ);
            let _ = intruder.create(r"\Secret\backdoor.txt", FILE_CREATE, 0, GENERIC_WRITE);
            // Other names of the same file (RULES.md rule 28): its unnamed data stream, an
            // alternate data stream on it.
            let _ = intruder.create(r"\Secret\vault.kdbx::$DATA", FILE_OPEN, 0, GENERIC_READ);
            let _ = intruder.create(r"\Secret\vault.kdbx:hidden", FILE_CREATE, 0, GENERIC_WRITE);
            let mut loot = intruder
                .create(r"\Temp\loot.txt", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("outside the protected tree");
            // A hard link into the tree, then a rename into it.
            intruder.link(&loot, r"\Secret\loot-link.txt");
            intruder.rename(&mut loot, r"\Secret\loot.txt");
            intruder.close(loot);
            (backup, intruder)
        });
        for handle in [editor_a, editor_b, build_a, build_b] {
            outcome.add(handle.join().expect("workload thread"));
        }
        let (backup, intruder) = secret.join().expect("workload thread");
        outcome.add(backup);
        outcome.add(intruder);
    });
    exit_processes(driver);
    outcome
}

/// Phase two, after a reload (fresh volumes): the editor and the build again, and the intruder
/// tries once more.
///
/// # Panics
///
/// When the file system refuses an operation the script expects to succeed.
pub fn phase_two(driver: &Driver, volumes: Volumes, pace: Duration) -> WorkloadOutcome {
    start_processes(driver);
    let mut outcome = WorkloadOutcome::default();
    std::thread::scope(|s| {
        let editor = s.spawn(|| {
            let mut a = Actor::new(driver, (1204, 1210), volumes.ntfs, NTFS, pace);
            a.directory(r"\Docs");
            let mut f = a
                .create(r"\Docs\draft.md", FILE_CREATE, 0, GENERIC_WRITE)
                .expect("create");
            a.write(&f, 0, b"# after the reload\n");
            a.rename(&mut f, r"\Docs\published.md");
            a.close(f);
            let g = a
                .create(r"\Docs\published.md", FILE_OPEN, 0, GENERIC_WRITE)
                .expect("open");
            a.delete(&g);
            a.close(g);
            a
        });
        let build = s.spawn(|| {
            let mut a = Actor::new(driver, (2310, 2311), volumes.fat, FAT, pace);
            a.directory(r"\obj");
            for n in 0..2 {
                let f = a
                    .create(&format!(r"\obj\unit{n}.o"), FILE_CREATE, 0, GENERIC_WRITE)
                    .expect("create");
                a.write(&f, 0, &[0x7f; 64]);
                a.close(f);
            }
            a
        });
        let intruder = s.spawn(|| {
            let mut a = Actor::new(driver, (6660, 6661), volumes.ntfs, NTFS, pace);
            let _ = a.create(r"\Secret\backdoor.txt", FILE_CREATE, 0, GENERIC_WRITE);
            a
        });
        for handle in [editor, build, intruder] {
            outcome.add(handle.join().expect("workload thread"));
        }
    });
    exit_processes(driver);
    outcome
}

/// Both phases' outcomes together.
pub fn combined(first: WorkloadOutcome, second: WorkloadOutcome) -> WorkloadOutcome {
    let mut all = first;
    all.merge(second);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_protocol::{EventFlags, Utf16Str, Verdict, VerdictOperation, VerdictRequestRepr};

    #[test]
    fn the_demo_policy_excepts_the_backup_program_by_its_full_path_only() {
        let policy =
            vigil_service::Policy::parse(&demo_policy_toml("allow")).expect("the policy parses");
        let names = process_names();
        let path: Vec<u16> = format!("{NTFS}{SECRET}\\x").encode_utf16().collect();
        let verdict = |pid| {
            policy
                .decide(
                    &VerdictRequestRepr {
                        request_id: 1,
                        operation: VerdictOperation::Create,
                        flags: EventFlags::NONE,
                        process_id: pid,
                        path: Utf16Str::from_units(&path),
                        target: Utf16Str::EMPTY,
                    },
                    0,
                    &names,
                )
                .verdict
        };
        assert_eq!(verdict(3100), Verdict::Allow, "backup.exe");
        assert_eq!(verdict(6660), Verdict::Deny, "intruder.exe");
    }
}
