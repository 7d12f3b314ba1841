//! Where the PostgreSQL server binaries are.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{BINDIR_VAR, ClusterError};

/// The folder holding `initdb`, `pg_ctl`, `postgres` and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    bindir: PathBuf,
}

impl PgBinaries {
    /// Finds the server binaries: `PG_BINDIR`, then `PATH`, then `pg_config --bindir`, then the
    /// newest `/usr/lib/postgresql/*/bin`.
    pub fn locate() -> Result<Self, ClusterError> {
        if let Some(dir) = std::env::var_os(BINDIR_VAR).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            return Self::in_dir(&dir).ok_or(ClusterError::BadBindir(dir));
        }
        let on_path = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default();
        let from_pg_config = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse().ok()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        debian.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        Self::search(
            on_path
                .into_iter()
                .chain(from_pg_config)
                .chain(debian.into_iter().map(|(_, dir)| dir)),
        )
    }

    /// The first of `candidates` that holds a server installation.
    pub fn search(candidates: impl IntoIterator<Item = PathBuf>) -> Result<Self, ClusterError> {
        candidates
            .into_iter()
            .find_map(|dir| Self::in_dir(&dir))
            .ok_or(ClusterError::BinariesNotFound)
    }

    /// The installation `dir` belongs to. A PATH entry may hold only symlinks to a few tools,
    /// so the folder is the one `pg_ctl` really lives in, where its siblings (createdb) are.
    fn in_dir(dir: &Path) -> Option<Self> {
        let bindir = fs::canonicalize(dir.join("pg_ctl"))
            .ok()?
            .parent()?
            .to_path_buf();
        ["initdb", "pg_ctl", "postgres", "createdb"]
            .iter()
            .all(|tool| bindir.join(tool).is_file())
            .then_some(Self { bindir })
    }

    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The path of one tool of this installation (`pg_dump`, `psql`, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}
