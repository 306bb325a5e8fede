//! Reading and writing credential files: owner-only modes set at creation, atomic replacement,
//! bounded reads, and the permission check on secret files.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{DIR_MODE, FILE_SIZE_MAX_BYTES};

/// Why a file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    /// Group or others may read (or write) it.
    Permissions {
        mode: u32,
    },
    /// Owned by another user than the process's.
    Owner {
        owner: u32,
        user: u32,
    },
    TooLarge {
        size: u64,
    },
}

/// Why a directory cannot hold credentials.
#[derive(Debug)]
pub(crate) enum DirError {
    Io(io::Error),
    /// It exists and group or others may access it (its mode is left alone: it may be a
    /// directory like `/etc` given by mistake).
    Open {
        mode: u32,
    },
    NotADirectory,
}

/// Create `dir` with [`DIR_MODE`] (missing parents with the default mode), or accept an
/// existing directory only if it is already owner-only.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), DirError> {
    match fs::symlink_metadata(dir) {
        Ok(metadata) if !metadata.is_dir() => Err(DirError::NotADirectory),
        Ok(metadata) => {
            let mode = metadata.mode() & 0o777;
            if mode & 0o077 != 0 {
                Err(DirError::Open { mode })
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(DirError::Io)?;
            }
            DirBuilder::new()
                .mode(DIR_MODE)
                .create(dir)
                .map_err(DirError::Io)?;
            // The umask may have narrowed it further; set exactly.
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(DirError::Io)
        }
        Err(e) => Err(DirError::Io(e)),
    }
}

/// Write `contents` to `path` with `mode`: written to a temporary file created with that mode
/// in the same directory, synced, then renamed over `path`.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut temporary_name = file_name.to_os_string();
    temporary_name.push(".tmp");
    let temporary: PathBuf = path.with_file_name(temporary_name);
    // A leftover from an interrupted run is ours to replace.
    match fs::remove_file(&temporary) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)?;
    // The umask may have narrowed the mode; certificates are meant to be world-readable.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)
}

/// Read `path` (at most [`FILE_SIZE_MAX_BYTES`]); when `secret`, refuse it unless it is owned
/// by this process's user and neither group nor others have any access.
pub(crate) fn read_file(path: &Path, secret: bool) -> Result<Vec<u8>, ReadError> {
    let file = fs::File::open(path).map_err(ReadError::Io)?;
    let metadata = file.metadata().map_err(ReadError::Io)?;
    if secret {
        let mode = metadata.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ReadError::Permissions { mode });
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let user = unsafe { libc::geteuid() };
        if metadata.uid() != user {
            return Err(ReadError::Owner {
                owner: metadata.uid(),
                user,
            });
        }
    }
    if metadata.len() > FILE_SIZE_MAX_BYTES {
        return Err(ReadError::TooLarge {
            size: metadata.len(),
        });
    }
    let mut bytes = Vec::new();
    file.take(FILE_SIZE_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > FILE_SIZE_MAX_BYTES {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "cannot be read: {e}"),
            ReadError::Permissions { mode } => write!(
                f,
                "is accessible by group or others (mode {mode:04o}); secret files must be owner-only (chmod 600)"
            ),
            ReadError::Owner { owner, user } => write!(
                f,
                "is owned by uid {owner}, not by this process's user (uid {user})"
            ),
            ReadError::TooLarge { size } => write!(
                f,
                "is {size} bytes, more than a credential file may be ({FILE_SIZE_MAX_BYTES})"
            ),
        }
    }
}
