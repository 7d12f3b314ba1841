//! The local cluster run as root: its own files (password, port, lock, `ready`) stay in a
//! folder the `postgres` OS user cannot write, are written without following a link planted
//! where they go, and get their mode whatever was there before. Only meaningful as root (the
//! server then runs as `postgres`); as any other user both are one user and the test says so.

use std::{
    fs::{self, Permissions},
    os::unix::fs::{MetadataExt, PermissionsExt, symlink},
    process::Command,
};

use dev_servers::LocalCluster;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn postgres_uid() -> u32 {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Stops the cluster however the test ends.
struct Stopping(LocalCluster);

impl Drop for Stopping {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

#[test]
fn as_root_the_clusters_own_files_are_out_of_postgres_reach() {
    if !is_root() {
        eprintln!("skipped: only as root does the server run as another user");
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    fs::set_permissions(parent.path(), Permissions::from_mode(0o755)).unwrap();
    let dir = parent.path().join(".pgdata");
    fs::create_dir(&dir).unwrap();
    // What the folder looked like when it was handed to `postgres` (as before this fix), with
    // a link planted where the password goes and a port file anyone may write.
    let victim = parent.path().join("victim");
    fs::write(&victim, "untouched").unwrap();
    symlink(&victim, dir.join("password")).unwrap();
    fs::write(dir.join("port"), "1").unwrap();
    fs::set_permissions(dir.join("port"), Permissions::from_mode(0o666)).unwrap();
    let postgres = postgres_uid();
    std::os::unix::fs::chown(&dir, Some(postgres), None).unwrap();

    let cluster = Stopping(LocalCluster::new(&dir).unwrap());
    let started = cluster.0.ensure_running().unwrap();
    assert!(started.created);

    assert_eq!(
        fs::read_to_string(&victim).unwrap(),
        "untouched",
        "a link was followed"
    );
    let folder = fs::metadata(&dir).unwrap();
    assert_eq!(folder.uid(), 0, "the folder is root's again");
    assert_eq!(folder.mode() & 0o022, 0, "no one else may write in it");
    for (name, mode) in [
        ("password", 0o600),
        (".lock", 0o600),
        ("port", 0o644),
        ("ready", 0o644),
    ] {
        let file = fs::symlink_metadata(dir.join(name)).unwrap();
        assert!(file.is_file(), "{name} is not a plain file");
        assert_eq!((file.uid(), file.mode() & 0o777), (0, mode), "{name}");
    }
    let data = fs::metadata(dir.join("data")).unwrap();
    assert_eq!((data.uid(), data.mode() & 0o777), (postgres, 0o700));
    let planted = Command::new("runuser")
        .args(["-u", "postgres", "--", "ln", "-s"])
        .arg(&victim)
        .arg(dir.join("planted"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(
        !planted.success(),
        "postgres could plant a link in root's folder"
    );

    // And it starts again from what it wrote.
    cluster.0.stop().unwrap();
    let again = cluster.0.ensure_running().unwrap();
    assert!(!again.created && again.started);
    assert_eq!(again.url.port(), started.url.port());
}
