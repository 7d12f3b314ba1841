//! One data directory and the `initdb` / `pg_ctl` commands that manage it.

use std::{
    fs::{self, Permissions},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::PathBuf,
    process::Command,
};

use secrecy::{ExposeSecret, SecretString};

use crate::{
    ClusterError, PgBinaries, SUPERUSER,
    files::{Owner, read_no_follow, replace_file},
    io_err, log_tail, run,
    run_as::RunAs,
    run_ok,
};
use db_connect::config::DatabaseUrl;

/// One data directory and the commands that manage it; shared by both kinds of cluster. The
/// data directory belongs to the server's user; the folder holding it (and the log) belongs to
/// this process, which writes into the data directory only by replacing files, never through a
/// path the server's user could have turned into a link.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) bins: PgBinaries,
    pub(crate) run_as: RunAs,
    pub(crate) data: PathBuf,
    pub(crate) log: PathBuf,
}

/// Settings for throwaway clusters: no fsync (an OS crash may lose them, which costs nothing),
/// but commits still reach the WAL, so a killed server restarts with every committed row.
pub(crate) const UNDURABLE: &str = "fsync = off\nfull_page_writes = off\n";

impl Server {
    /// `initdb` with password authentication for every connection, then our settings. The
    /// data directory is made here, empty and the server user's, inside a folder it cannot
    /// write.
    pub(crate) fn init(
        &self,
        password: &SecretString,
        port: u16,
        extra_conf: &str,
    ) -> Result<(), ClusterError> {
        let parent = self.data.parent().expect("data directory has a parent");
        fs::create_dir(&self.data).map_err(io_err(format!("creating {}", self.data.display())))?;
        self.run_as.give(&self.data)?;
        fs::set_permissions(&self.data, Permissions::from_mode(0o700))
            .map_err(io_err(format!("closing {}", self.data.display())))?;
        self.run_as.check_reach(&self.data)?;
        let pwfile = parent.join(".initdb-password");
        let server = Owner::Server(&self.run_as);
        replace_file(&pwfile, password.expose_secret(), 0o600, server)?;
        let mut initdb = self.run_as.command(self.bins.tool("initdb"));
        initdb
            .arg("--pgdata")
            .arg(&self.data)
            .args(["--username", SUPERUSER, "--auth", "scram-sha-256"])
            .args(["--encoding", "UTF8", "--locale", "C", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()));
        if !extra_conf.is_empty() {
            initdb.arg("--no-sync");
        }
        let result = run_ok(initdb);
        let _ = fs::remove_file(&pwfile);
        result?;
        self.set_port(port, extra_conf)
    }

    /// Writes the listening settings into `local.conf`, which `postgresql.conf` includes.
    pub(crate) fn set_port(&self, port: u16, extra_conf: &str) -> Result<(), ClusterError> {
        let server = Owner::Server(&self.run_as);
        let conf = self.data.join("postgresql.conf");
        let main = read_no_follow(&conf).map_err(io_err(format!("reading {}", conf.display())))?;
        if !main.contains("include_if_exists = 'local.conf'") {
            let main = main + "\ninclude_if_exists = 'local.conf'\n";
            replace_file(&conf, &main, 0o600, server)?;
        }
        let settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n{extra_conf}"
        );
        replace_file(&self.data.join("local.conf"), &settings, 0o600, server)
    }

    pub(crate) fn is_running(&self) -> Result<bool, ClusterError> {
        let mut status = self.run_as.command(self.bins.tool("pg_ctl"));
        status.arg("status").arg("--pgdata").arg(&self.data);
        // pg_ctl status: 0 running, 3 not running, 4 no usable data directory.
        Ok(run(status)?.status.code() == Some(0))
    }

    pub(crate) fn start(&self) -> Result<(), ClusterError> {
        // The server's user appends to the log but cannot create it in this process's folder.
        if fs::symlink_metadata(&self.log).is_err() {
            replace_file(&self.log, "", 0o600, Owner::Server(&self.run_as))?;
        }
        let mut start = self.run_as.command(self.bins.tool("pg_ctl"));
        start
            .arg("start")
            .arg("--pgdata")
            .arg(&self.data)
            .arg("--log")
            .arg(&self.log)
            .args(["--wait", "--timeout", "60", "--silent"])
            // Its own process group, so Ctrl-C in the caller's terminal does not reach the server.
            .process_group(0);
        match run_ok(start) {
            Ok(_) => Ok(()),
            Err(ClusterError::CommandFailed { .. }) => Err(ClusterError::StartFailed {
                log: self.log.clone(),
                tail: log_tail(&self.log),
            }),
            Err(other) => Err(other),
        }
    }

    pub(crate) fn stop(&self, mode: &str) -> Result<(), ClusterError> {
        let mut stop = self.run_as.command(self.bins.tool("pg_ctl"));
        stop.arg("stop")
            .arg("--pgdata")
            .arg(&self.data)
            .args(["--mode", mode, "--wait", "--silent"]);
        run_ok(stop).map(drop)
    }

    pub(crate) fn create_database(&self, url: &DatabaseUrl) -> Result<(), ClusterError> {
        let mut createdb = Command::new(self.bins.tool("createdb"));
        createdb
            .args(["--host", url.host(), "--port", &url.port().to_string()])
            .args(["--username", url.user(), url.database()])
            .env("PGPASSWORD", url.password().expose_secret());
        run_ok(createdb).map(drop)
    }
}
