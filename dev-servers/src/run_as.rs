//! Who runs server commands: PostgreSQL refuses to run as root, so a root process runs them as
//! the `postgres` OS user. Either way a server command starts with a cleared environment, so
//! what this process holds (secrets a `.env` loaded, say) never reaches a server's
//! `/proc/<pid>/environ`.

use std::{
    ffi::{CString, OsStr, OsString},
    fs::{File, Permissions},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{ClusterError, SERVER_OS_USER, io_err, run};

/// The variables a server command keeps: where programs are, and the locale and time zone
/// PostgreSQL reads (`LC_*` too). Everything else is cleared.
const SERVER_ENVIRONMENT: &[&str] = &["PATH", "LANG", "LANGUAGE", "TZ", "PGTZ"];

fn server_environment() -> impl Iterator<Item = (OsString, OsString)> {
    std::env::vars_os().filter(|(name, _)| {
        name.to_str()
            .is_some_and(|name| SERVER_ENVIRONMENT.contains(&name) || name.starts_with("LC_"))
    })
}

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

    /// A server command (`initdb`, `pg_ctl`, ...) with a cleared environment.
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = match self {
            Self::Me => Command::new(program),
            Self::ServerUser { .. } => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", SERVER_OS_USER, "--"]).arg(program);
                cmd
            }
        };
        cmd.env_clear().envs(server_environment());
        cmd
    }

    /// Fails with [`ClusterError::Unreachable`] unless the server's user can write in `dir`
    /// (and so reach it through every parent).
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

    /// Hands a file this process just created to the user that runs the server, through the
    /// open file, so a link swapped in at `path` meanwhile is never followed.
    pub(crate) fn give_file(&self, file: &File, path: &Path) -> Result<(), ClusterError> {
        self.hand_over(path, |uid, gid| std::os::unix::fs::fchown(file, uid, gid))
    }

    /// Makes `dir` (which holds this process's files: password, port, lock, markers) this
    /// process's own and writable by no one else, so the server's user, who may reach into
    /// it, can never plant a link there. A folder an older version handed to `postgres` is
    /// taken back.
    pub(crate) fn keep_own(&self, dir: &Path) -> Result<(), ClusterError> {
        if let Self::Me = self {
            return Ok(());
        }
        let action = || format!("keeping {} to this process's user", dir.display());
        // SAFETY: geteuid and getegid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).map_err(io_err(action()))?;
        std::fs::set_permissions(dir, Permissions::from_mode(0o755)).map_err(io_err(action()))
    }

    /// Hands a path this process created to the user that runs the server (the link itself,
    /// were it one).
    pub(crate) fn give(&self, path: &Path) -> Result<(), ClusterError> {
        self.hand_over(path, |uid, gid| std::os::unix::fs::lchown(path, uid, gid))
    }

    fn hand_over(
        &self,
        path: &Path,
        chown: impl FnOnce(Option<u32>, Option<u32>) -> std::io::Result<()>,
    ) -> Result<(), ClusterError> {
        match self {
            Self::Me => Ok(()),
            Self::ServerUser { uid, gid } => chown(Some(*uid), Some(*gid)).map_err(io_err(
                format!("handing {} to {SERVER_OS_USER}", path.display()),
            )),
        }
    }
}
