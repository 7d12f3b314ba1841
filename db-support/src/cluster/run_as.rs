//! Who runs server commands: PostgreSQL refuses to run as root, so a root process runs them as
//! the `postgres` OS user.

use std::{
    ffi::{CString, OsStr},
    path::{Path, PathBuf},
    process::Command,
};

use super::{ClusterError, SERVER_OS_USER, io_err, run};

/// Who runs server commands: this process's user, or `postgres` when this process is root.
#[derive(Debug, Clone)]
pub(crate) enum RunAs {
    Me,
    ServerUser { uid: u32, gid: u32 },
}

impl RunAs {
    pub(crate) fn detect() -> Result<Self, ClusterError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(Self::Me);
        }
        let name = CString::new(SERVER_OS_USER).expect("no NUL in a constant");
        // SAFETY: `name` is a valid C string; the returned record is read before any other
        // getpw* call could overwrite it.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if entry.is_null() {
            return Err(ClusterError::NoServerUser);
        }
        // SAFETY: checked non-null above.
        let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
        Ok(Self::ServerUser { uid, gid })
    }

    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match self {
            Self::Me => Command::new(program),
            Self::ServerUser { .. } => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", SERVER_OS_USER, "--"]).arg(program);
                cmd
            }
        }
    }

    /// Fails with [`ClusterError::Unreachable`] unless the server's user can write in `dir`.
    pub(crate) fn check_reach(&self, dir: &Path) -> Result<(), ClusterError> {
        if let Self::Me = self {
            return Ok(());
        }
        let mut probe = self.command("test");
        probe.arg("-w").arg(dir).arg("-a").arg("-x").arg(dir);
        match run(probe)?.status.success() {
            true => Ok(()),
            false => Err(ClusterError::Unreachable(dir.to_path_buf())),
        }
    }

    /// A new temporary folder named `prefix...`, kept (its owner removes it), given to the user
    /// that runs the server.
    pub(crate) fn temp_dir(&self, prefix: &str) -> Result<PathBuf, ClusterError> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(io_err("creating a temporary directory"))?
            .keep();
        self.give(&dir)?;
        Ok(dir)
    }

    /// Hands a path this process created to the user that runs the server.
    pub(crate) fn give(&self, path: &Path) -> Result<(), ClusterError> {
        match self {
            Self::Me => Ok(()),
            Self::ServerUser { uid, gid } => std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .map_err(io_err(format!(
                    "handing {} to {SERVER_OS_USER}",
                    path.display()
                ))),
        }
    }
}
