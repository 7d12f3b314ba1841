//! Files this process writes for a cluster. As root, the server runs as `postgres`, which owns
//! the data directory and could plant a symbolic link where root is about to write (turning a
//! write of the password into an overwrite of any file on the machine). So root's own files
//! (password, port, lock, markers) live in a folder `postgres` cannot write, and every file is
//! written by replacing what is at its path, never by following it.

use std::{
    fs::{self, File, OpenOptions, Permissions},
    io::{self, Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use crate::{ClusterError, io_err, run_as::RunAs};

/// Who a written file belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Owner<'a> {
    /// This process's user.
    Me,
    /// The user that runs the server (`postgres` when this process is root).
    Server(&'a RunAs),
}

/// Replaces `path` with a new file holding `contents`, with `mode` applied whatever existed
/// before, owned by `owner` (changed through the open file, never through the path): a file
/// or a symbolic link already at `path` is removed first, and `create_new` refuses to follow a
/// link created in between.
pub(crate) fn replace_file(
    path: &Path,
    contents: &str,
    mode: u32,
    owner: Owner<'_>,
) -> Result<(), ClusterError> {
    let action = || format!("writing {}", path.display());
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(io_err(action())(err)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_err(action()))?;
    // The mode given at creation is narrowed by the umask; set it exactly.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io_err(action()))?;
    if let Owner::Server(run_as) = owner {
        run_as.give_file(&file, path)?;
    }
    file.write_all(contents.as_bytes())
        .map_err(io_err(action()))
}

/// Opens (creating) a lock file, `0600`, refusing a symbolic link at `path`.
pub(crate) fn open_lock(path: &Path) -> Result<File, ClusterError> {
    let action = || format!("opening the lock {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err(action()))?;
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(io_err(action()))?;
    Ok(file)
}

/// Reads `path`, refusing a symbolic link in its place.
pub(crate) fn read_no_follow(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, symlink};

    use super::*;

    #[test]
    fn a_planted_link_is_replaced_not_followed_and_an_old_mode_does_not_survive() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        let link = dir.path().join("password");
        symlink(&victim, &link).unwrap();
        replace_file(&link, "secret", 0o600, Owner::Me).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        let written = fs::symlink_metadata(&link).unwrap();
        assert!(written.is_file(), "the link was followed");
        assert_eq!(written.mode() & 0o777, 0o600);

        let loose = dir.path().join("port");
        fs::write(&loose, "1").unwrap();
        fs::set_permissions(&loose, Permissions::from_mode(0o666)).unwrap();
        replace_file(&loose, "2", 0o600, Owner::Me).unwrap();
        assert_eq!(fs::metadata(&loose).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&loose).unwrap(), "2");
    }

    #[test]
    fn locks_and_reads_refuse_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        let link = dir.path().join(".lock");
        symlink(&victim, &link).unwrap();
        assert!(open_lock(&link).is_err());
        assert!(read_no_follow(&link).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        let lock = dir.path().join("real.lock");
        fs::write(&lock, "").unwrap();
        fs::set_permissions(&lock, Permissions::from_mode(0o644)).unwrap();
        open_lock(&lock).unwrap();
        assert_eq!(fs::metadata(&lock).unwrap().mode() & 0o777, 0o600);
    }
}
