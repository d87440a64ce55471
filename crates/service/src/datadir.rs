//! The rules that keep the service's data (every path every user touched) and its policy out
//! of ordinary users' reach: what the Windows service checks at install and at every start.
//! User mode, portable: the rules are written against [`FileSecurity`], so they are tested on
//! Linux with a scripted file system; `crate::windows::security` implements it with the
//! Windows security APIs (cross-compiled and read, never run here). `docs/service-threat-model.md`
//! says what each rule defends against.
//!
//! * The data directory (`%ProgramData%\Vigil`) is created with a protected DACL granting
//!   SYSTEM and Administrators full control and nobody else anything (no inheritance from
//!   `%ProgramData%`, whose default lets every user create files and read many). An existing
//!   one must be owned by SYSTEM or Administrators (a user who created it first owns it and
//!   could rewrite its DACL) and must not be a reparse point (a junction would send every
//!   write, rename and delete elsewhere, as SYSTEM); its DACL is then set again.
//! * The policy is read only from a file owned by SYSTEM or Administrators, not a reparse
//!   point, in a directory that passes the same owner and reparse checks.
//! * The service's output lies inside the data directory: rotation renames and deletes files as
//!   SYSTEM, and outside it that would be an arbitrary rename and delete for whoever chose the
//!   path.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Who owns a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// `NT AUTHORITY\SYSTEM`.
    System,
    /// `BUILTIN\Administrators`.
    Administrators,
    /// Anyone else (the SID as a string).
    Other(String),
}

impl Owner {
    /// Only SYSTEM and Administrators are trusted: any other owner can change the DACL.
    ///
    /// The `wine-harness` feature (for the Wine test stage only, never a shipped build) trusts
    /// every owner: Wine reports every file as owned by the Unix user's account and cannot
    /// show ACLs, so the SCM sequence could not be exercised there otherwise.
    pub const fn is_trusted(&self) -> bool {
        matches!(self, Self::System | Self::Administrators) || cfg!(feature = "wine-harness")
    }
}

/// The file-system operations the rules need.
pub trait FileSecurity {
    /// Whether `path` exists (without following a final reparse point).
    ///
    /// # Errors
    ///
    /// The query's failure.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Whether `path` is a reparse point (junction, symbolic link, mount point).
    ///
    /// # Errors
    ///
    /// The query's failure.
    fn is_reparse_point(&self, path: &Path) -> io::Result<bool>;
    /// `path`'s owner.
    ///
    /// # Errors
    ///
    /// The query's failure.
    fn owner(&self, path: &Path) -> io::Result<Owner>;
    /// Creates directory `path` with the protected SYSTEM-and-Administrators DACL, in the same
    /// call (no moment with a looser one).
    ///
    /// # Errors
    ///
    /// The creation's failure.
    fn create_protected_dir(&self, path: &Path) -> io::Result<()>;
    /// Makes Administrators the owner of `path` (a directory this service just created: its
    /// creator may otherwise be the installing administrator's own account).
    ///
    /// # Errors
    ///
    /// The change's failure.
    fn set_owner_administrators(&self, path: &Path) -> io::Result<()>;
    /// Sets `path`'s DACL to the protected SYSTEM-and-Administrators one.
    ///
    /// # Errors
    ///
    /// The change's failure.
    fn protect(&self, path: &Path) -> io::Result<()>;
}

/// Why a path was refused.
#[derive(Debug)]
pub enum SecurityError {
    /// A reparse point where a real file or directory must be.
    ReparsePoint(PathBuf),
    /// Owned by someone who could change its permissions.
    UntrustedOwner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: Owner,
    },
    /// An output path outside the data directory (or not plainly inside it).
    OutputOutside {
        /// The output path.
        path: PathBuf,
        /// The data directory.
        dir: PathBuf,
    },
    /// A query or change failed.
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        error: io::Error,
    },
}

impl fmt::Display for SecurityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReparsePoint(path) => write!(
                f,
                "{} is a reparse point (junction or link): refused, it could redirect the \
                 service's writes",
                path.display()
            ),
            Self::UntrustedOwner { path, owner } => write!(
                f,
                "{} is owned by {owner:?}, not SYSTEM or Administrators: refused (its owner \
                 could change its permissions); remove it and let `vigil service install` \
                 create it",
                path.display()
            ),
            Self::OutputOutside { path, dir } => write!(
                f,
                "output {} is not inside the data directory {}: refused (rotation renames and \
                 deletes files there as SYSTEM)",
                path.display(),
                dir.display()
            ),
            Self::Io { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

impl std::error::Error for SecurityError {}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SecurityError + '_ {
    move |error| SecurityError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Checks one existing path: not a reparse point, trusted owner.
fn check_trusted(fs: &dyn FileSecurity, path: &Path) -> Result<(), SecurityError> {
    if fs.is_reparse_point(path).map_err(io_error(path))? {
        return Err(SecurityError::ReparsePoint(path.to_path_buf()));
    }
    let owner = fs.owner(path).map_err(io_error(path))?;
    if !owner.is_trusted() {
        return Err(SecurityError::UntrustedOwner {
            path: path.to_path_buf(),
            owner,
        });
    }
    Ok(())
}

/// Makes sure the data directory exists, is the directory it claims to be, is owned by SYSTEM
/// or Administrators, and has the protected DACL (see the module documentation).
///
/// # Errors
///
/// The first rule broken, or a failed query or change.
pub fn secure_data_dir(fs: &dyn FileSecurity, dir: &Path) -> Result<(), SecurityError> {
    if !fs.exists(dir).map_err(io_error(dir))? {
        fs.create_protected_dir(dir).map_err(io_error(dir))?;
        // Created by us just now, so nobody else's: the owner becomes the group, whoever of
        // the administrators ran the install.
        fs.set_owner_administrators(dir).map_err(io_error(dir))?;
    }
    check_trusted(fs, dir)?;
    fs.protect(dir).map_err(io_error(dir))
}

/// Checks that the policy file at `path` can be trusted: it and its directory are owned by
/// SYSTEM or Administrators and neither is a reparse point.
///
/// # Errors
///
/// The first rule broken.
pub fn trusted_policy_file(fs: &dyn FileSecurity, path: &Path) -> Result<(), SecurityError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        check_trusted(fs, parent)?;
    }
    check_trusted(fs, path)
}

/// Checks that `output` lies plainly inside `dir`: absolute, no `.` or `..` components, below
/// it (not the directory itself).
///
/// # Errors
///
/// [`SecurityError::OutputOutside`].
pub fn check_output_path(dir: &Path, output: &Path) -> Result<(), SecurityError> {
    let plain = output.is_absolute()
        && output
            .components()
            .all(|c| !matches!(c, Component::ParentDir | Component::CurDir));
    if plain && output.starts_with(dir) && output != dir {
        Ok(())
    } else {
        Err(SecurityError::OutputOutside {
            path: output.to_path_buf(),
            dir: dir.to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// A scripted file system: each path's owner and reparse flag, and a log of changes.
    #[derive(Default)]
    struct Scripted {
        files: RefCell<HashMap<PathBuf, (Owner, bool)>>,
        changes: RefCell<Vec<String>>,
    }

    impl Scripted {
        fn with(self, path: &str, owner: Owner, reparse: bool) -> Self {
            self.files
                .borrow_mut()
                .insert(PathBuf::from(path), (owner, reparse));
            self
        }
        fn get(&self, path: &Path) -> io::Result<(Owner, bool)> {
            self.files
                .borrow()
                .get(path)
                .cloned()
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        }
    }

    impl FileSecurity for Scripted {
        fn exists(&self, path: &Path) -> io::Result<bool> {
            Ok(self.files.borrow().contains_key(path))
        }
        fn is_reparse_point(&self, path: &Path) -> io::Result<bool> {
            self.get(path).map(|(_, reparse)| reparse)
        }
        fn owner(&self, path: &Path) -> io::Result<Owner> {
            self.get(path).map(|(owner, _)| owner)
        }
        fn create_protected_dir(&self, path: &Path) -> io::Result<()> {
            self.changes
                .borrow_mut()
                .push(format!("create {}", path.display()));
            self.files.borrow_mut().insert(
                path.to_path_buf(),
                (Owner::Other("installer".into()), false),
            );
            Ok(())
        }
        fn set_owner_administrators(&self, path: &Path) -> io::Result<()> {
            self.changes
                .borrow_mut()
                .push(format!("own {}", path.display()));
            if let Some(entry) = self.files.borrow_mut().get_mut(path) {
                entry.0 = Owner::Administrators;
            }
            Ok(())
        }
        fn protect(&self, path: &Path) -> io::Result<()> {
            self.changes
                .borrow_mut()
                .push(format!("protect {}", path.display()));
            Ok(())
        }
    }

    const DIR: &str = "/ProgramData/Vigil";

    #[test]
    fn a_missing_data_directory_is_created_protected() {
        let fs = Scripted::default();
        secure_data_dir(&fs, Path::new(DIR)).unwrap();
        assert_eq!(
            *fs.changes.borrow(),
            [
                format!("create {DIR}"),
                format!("own {DIR}"),
                format!("protect {DIR}")
            ]
        );
    }

    #[test]
    fn a_data_directory_a_user_created_first_is_refused_and_left_alone() {
        let fs = Scripted::default().with(DIR, Owner::Other("S-1-5-21-1-2-3-1001".into()), false);
        let e = secure_data_dir(&fs, Path::new(DIR)).unwrap_err();
        assert!(matches!(e, SecurityError::UntrustedOwner { .. }), "{e}");
        assert!(fs.changes.borrow().is_empty(), "its DACL is not touched");
    }

    #[test]
    fn a_junction_as_data_directory_is_refused() {
        let fs = Scripted::default().with(DIR, Owner::Administrators, true);
        let e = secure_data_dir(&fs, Path::new(DIR)).unwrap_err();
        assert!(matches!(e, SecurityError::ReparsePoint(_)), "{e}");
    }

    #[test]
    fn an_admin_owned_directory_gets_its_dacl_set_again() {
        let fs = Scripted::default().with(DIR, Owner::System, false);
        secure_data_dir(&fs, Path::new(DIR)).unwrap();
        assert_eq!(*fs.changes.borrow(), [format!("protect {DIR}")]);
    }

    #[test]
    fn a_policy_planted_by_a_user_is_refused() {
        let policy = format!("{DIR}/policy.toml");
        let fs = Scripted::default()
            .with(DIR, Owner::Administrators, false)
            .with(&policy, Owner::Other("S-1-5-21-1-2-3-1001".into()), false);
        assert!(matches!(
            trusted_policy_file(&fs, Path::new(&policy)),
            Err(SecurityError::UntrustedOwner { .. })
        ));
        let fs = Scripted::default()
            .with(DIR, Owner::Other("user".into()), false)
            .with(&policy, Owner::Administrators, false);
        assert!(
            trusted_policy_file(&fs, Path::new(&policy)).is_err(),
            "a user-owned directory can have the file replaced"
        );
        let fs = Scripted::default()
            .with(DIR, Owner::Administrators, false)
            .with(&policy, Owner::System, false);
        trusted_policy_file(&fs, Path::new(&policy)).unwrap();
    }

    #[test]
    fn outputs_outside_the_data_directory_are_refused() {
        let dir = Path::new(DIR);
        check_output_path(dir, &dir.join("vigil.jsonl")).unwrap();
        check_output_path(dir, &dir.join("sub/vigil.jsonl")).unwrap();
        for bad in [
            "/Windows/System32/config/SAM",
            "/ProgramData/Vigil/../Other/x.jsonl",
            "/ProgramData/VigilX/x.jsonl",
            "/ProgramData/Vigil",
            "vigil.jsonl",
        ] {
            assert!(
                check_output_path(dir, Path::new(bad)).is_err(),
                "{bad} must be refused"
            );
        }
    }
}
