//! The API on a Unix socket for the CLI on the node's own machine (issue 17, item 4): the same
//! router and handlers as the TCP API, no token; who may connect is decided by the kernel's
//! peer credentials instead.
//!
//! - The socket (default [`DEFAULT_PATH`], `halcyon daemon --api-socket`) is created by the
//!   daemon, so it is owned by the daemon's user (root in production), mode 0600: the file
//!   system lets only that user (and root) connect.
//! - Every request's client is checked again in `auth::public` with the credentials the
//!   kernel recorded at `connect` (`SO_PEERCRED`, [`LocalPeer`]): uid 0 or the daemon's own
//!   uid, anything else refused (403) and counted with the other forbidden requests. This
//!   also covers the moment between `bind` and `chmod`, and a mode changed by hand.
//! - Creation is careful ([`bind`]): a socket left by a daemon that is gone (nothing answers
//!   a connect) is removed and replaced; a socket a live daemon serves is not touched (the
//!   start is refused: two daemons on one path); anything else at the path (a regular file,
//!   a directory, a symbolic link) is never removed: the start is refused naming the path.
//!
//! Invariant: nothing but a socket is ever removed from the path.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the daemon serves its API for local clients unless told otherwise.
pub const DEFAULT_PATH: &str = "/run/halcyon/api.sock";

/// The socket's mode: the daemon's user only.
pub const MODE: u32 = 0o600;

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
pub const PATH_MAX_BYTES: usize = 107;

/// A client of the local socket, as the kernel recorded it at `connect` (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalPeer {
    /// `None` when the kernel could not say (the request is refused).
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

impl
    axum::extract::connect_info::Connected<
        axum::serve::IncomingStream<'_, tokio::net::UnixListener>,
    > for LocalPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(credentials) => LocalPeer {
                uid: Some(credentials.uid()),
                pid: credentials.pid(),
            },
            Err(e) => {
                tracing::warn!("local API socket: the client's credentials are unknown: {e}");
                LocalPeer {
                    uid: None,
                    pid: None,
                }
            }
        }
    }
}

/// True when a client of user `uid` may use the local socket of a daemon running as
/// `daemon_uid`: root, or the daemon's own user.
pub fn allowed(uid: u32, daemon_uid: u32) -> bool {
    uid == 0 || uid == daemon_uid
}

/// This process's effective user.
pub fn own_uid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Why the local socket could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "API socket {path}: the path exists and is {kind}, not a socket; it is left as it is: \
         remove it or choose another path (--api-socket)"
    )]
    NotASocket { path: PathBuf, kind: &'static str },
    #[error(
        "API socket {path}: another process serves it (a daemon of another node or cluster on \
         this machine?); choose another path (--api-socket)"
    )]
    InUse { path: PathBuf },
    #[error(
        "API socket {path}: the path is {bytes} bytes long; a Unix socket's path holds at most \
         {PATH_MAX_BYTES}"
    )]
    TooLong { path: PathBuf, bytes: usize },
    #[error("API socket {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: io::Error,
    },
}

fn io_error(path: &Path, what: &'static str) -> impl FnOnce(io::Error) -> SocketError + use<> {
    let path = path.to_owned();
    move |source| SocketError::Io { path, what, source }
}

fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Creates the socket at `path` (mode [`MODE`], its directory created if missing) and listens
/// on it; see the module's documentation for what is replaced and what refused.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, SocketError> {
    let bytes = path.as_os_str().len();
    if bytes > PATH_MAX_BYTES {
        return Err(SocketError::TooLong {
            path: path.to_owned(),
            bytes,
        });
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error(path, "cannot create its directory"))?;
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(path, "cannot look at the path")(e)),
        Ok(metadata) if !metadata.file_type().is_socket() => {
            return Err(SocketError::NotASocket {
                path: path.to_owned(),
                kind: kind_of(metadata.file_type()),
            });
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(SocketError::InUse {
                    path: path.to_owned(),
                });
            }
            // Nothing listens: left by a daemon that is gone.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "removing the API socket a previous daemon left");
                std::fs::remove_file(path)
                    .map_err(io_error(path, "cannot remove the stale socket"))?;
            }
            Err(e) => return Err(io_error(path, "cannot tell whether it is in use")(e)),
        },
    }
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(io_error(path, "cannot listen"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(MODE))
        .map_err(io_error(path, "cannot set its mode to 0600"))?;
    listener
        .set_nonblocking(true)
        .map_err(io_error(path, "cannot make it non-blocking"))?;
    Ok(listener)
}

/// What tells one socket file from another at the same path: device, inode and change time
/// (an inode number is reused once a file is gone).
pub type SocketIdentity = (u64, u64, i64, i64);

/// The identity of the socket file at `path`, to remove it at the end ([`remove_if_ours`]);
/// `None` when there is no socket there.
pub fn identity(path: &Path) -> Option<SocketIdentity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_socket())
        .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

/// Removes the socket at `path` when it is still the one with `identity` (a daemon's clean
/// stop: the CLI then finds no socket rather than one nobody serves); anything else there is
/// left alone. Returns whether it was removed.
pub fn remove_if_ours(path: &Path, identity: SocketIdentity) -> bool {
    if self::identity(path) != Some(identity) {
        return false;
    }
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot remove the API socket: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_socket_this_daemon_made_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let _listener = bind(&path).unwrap();
        let ours = identity(&path).expect("a socket");
        // Replaced by another socket (another daemon's): left alone.
        let elsewhere = dir.path().join("other.sock");
        let _other = bind(&elsewhere).unwrap();
        std::fs::rename(&elsewhere, &path).unwrap();
        assert!(!remove_if_ours(&path, ours));
        assert!(path.exists());
        let theirs = identity(&path).unwrap();
        assert!(remove_if_ours(&path, theirs));
        assert!(!path.exists());
        // A regular file is never taken for it.
        std::fs::write(&path, "x").unwrap();
        assert_eq!(identity(&path), None);
        assert!(!remove_if_ours(&path, theirs));
        assert!(path.exists());
    }

    #[test]
    fn a_new_socket_is_owner_only_and_its_directory_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/halcyon/api.sock");
        let _listener = bind(&path).unwrap();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        assert!(metadata.file_type().is_socket());
        assert_eq!(metadata.permissions().mode() & 0o777, MODE);
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_served_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let first = bind(&path).unwrap();
        // Served: refused, and still served.
        let refused = bind(&path).unwrap_err();
        assert!(matches!(refused, SocketError::InUse { .. }), "{refused}");
        assert!(refused.to_string().contains(&path.display().to_string()));
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
        // Its listener gone, the file left behind: replaced.
        drop(first);
        assert!(std::fs::symlink_metadata(&path).is_ok());
        let _second = bind(&path).unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    }

    #[test]
    fn anything_but_a_socket_at_the_path_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "keep me").unwrap();
        let e = bind(&file).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "API socket {}: the path exists and is a regular file, not a socket; it is left \
                 as it is: remove it or choose another path (--api-socket)",
                file.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

        let directory = dir.path().join("directory");
        std::fs::create_dir(&directory).unwrap();
        assert!(matches!(
            bind(&directory),
            Err(SocketError::NotASocket {
                kind: "a directory",
                ..
            })
        ));
        // A link, even to a socket, is not replaced.
        let target = dir.path().join("real.sock");
        let _listener = bind(&target).unwrap();
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(
            bind(&link),
            Err(SocketError::NotASocket {
                kind: "a symbolic link",
                ..
            })
        ));
        assert!(std::fs::symlink_metadata(&link).is_ok());
    }

    #[test]
    fn a_path_too_long_for_a_socket_is_refused_with_its_length() {
        let path = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        let e = bind(&path).unwrap_err();
        assert!(
            e.to_string()
                .contains("is 125 bytes long; a Unix socket's path holds at most 107"),
            "{e}"
        );
    }

    #[test]
    fn root_and_the_daemons_user_are_allowed_no_one_else() {
        assert!(allowed(0, 0));
        assert!(allowed(0, 1000));
        assert!(allowed(1000, 1000));
        assert!(!allowed(65534, 0));
        assert!(!allowed(1001, 1000));
    }
}
