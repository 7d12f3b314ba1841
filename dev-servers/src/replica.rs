//! A streaming replica of a throwaway cluster, for tests and the bench: `pg_basebackup -R` into a
//! temporary folder, a hot standby on a free port, removed with its folder when this process ends.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use secrecy::ExposeSecret;

use crate::{
    ClusterError, PgBinaries, ThrowawayCluster, free_port, log_tail, run,
    run_as::RunAs,
    run_ok,
    server::{Server, UNDURABLE},
};
use db_connect::config::{DatabaseUrl, PoolSettings};

/// A hot standby streaming from a [`ThrowawayCluster`], reached with the primary's superuser.
/// A replication slot on the primary keeps the WAL it has not received yet, so it catches up
/// after being stopped for a while; the slot is dropped with it.
#[derive(Debug)]
pub struct Replica {
    dir: PathBuf,
    server: Server,
    url: DatabaseUrl,
    primary: DatabaseUrl,
    slot: String,
    watchdog: Child,
}

impl Replica {
    /// Copies `primary` with `pg_basebackup -R` (which writes the standby's connection settings)
    /// and starts it as a hot standby. Databases created on the primary later stream over.
    pub fn start(primary: &ThrowawayCluster) -> Result<Self, ClusterError> {
        static REPLICAS: AtomicU32 = AtomicU32::new(0);
        let source = primary.url("postgres")?;
        let slot = format!(
            "replica_{}_{}",
            std::process::id(),
            REPLICAS.fetch_add(1, Ordering::Relaxed)
        );
        let run_as = RunAs::detect()?;
        let dir = run_as.temp_dir("pg-replica-")?;
        let server = Server {
            bins: primary.binaries().clone(),
            run_as,
            data: dir.join("data"),
            log: dir.join("postgres.log"),
        };
        let watchdog = ThrowawayCluster::spawn_watchdog(&server, &dir)?;
        // The slot reserves WAL from now on, before the backup's checkpoint: checkpoints of
        // concurrent work cannot remove what the copy will need.
        run_ok(on_primary(
            &server.bins,
            &source,
            &format!("SELECT pg_create_physical_replication_slot('{slot}', true)"),
        ))?;
        let mut backup = server.run_as.command(server.bins.tool("pg_basebackup"));
        backup
            .args([
                "--host",
                source.host(),
                "--port",
                &source.port().to_string(),
            ])
            .args(["--username", source.user(), "--pgdata"])
            .arg(&server.data)
            .args([
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
            ])
            .args(["--slot", &slot])
            .arg("--no-sync")
            .env("PGPASSWORD", source.password().expose_secret());
        if let Err(err) = run_ok(backup) {
            let _ = run(drop_slot(&server.bins, &source, &slot));
            return Err(err);
        }
        let mut port = free_port()?;
        server.set_port(port, UNDURABLE)?;
        let mut attempts = 0;
        while let Err(err) = server.start() {
            attempts += 1;
            if attempts == 3 {
                return Err(err);
            }
            port = free_port()?;
            server.set_port(port, UNDURABLE)?;
        }
        Ok(Self {
            url: source.with_host_port("127.0.0.1", port),
            primary: source,
            slot,
            dir,
            server,
            watchdog,
        })
    }

    /// The URL of `database` on the replica.
    pub fn url(&self, database: &str) -> Result<DatabaseUrl, ClusterError> {
        Ok(self.url.with_database(database)?)
    }

    pub fn binaries(&self) -> &PgBinaries {
        &self.server.bins
    }

    /// The temporary folder holding the replica's data directory and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until the replica streams from the primary and has replayed everything the
    /// primary had written when this was called (at most a minute).
    pub async fn wait_until_caught_up(&self) -> Result<(), DbErr> {
        let settings = PoolSettings {
            max_connections: 1,
            ..PoolSettings::default()
        };
        let primary = db_connect::connect(&self.primary, &settings).await?;
        let written = primary
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT pg_current_wal_lsn()::text",
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("pg_current_wal_lsn() returned no row".into()))?
            .try_get_by_index::<String>(0)?;
        primary.close().await?;
        let standby = db_connect::connect(
            &self
                .url("postgres")
                .map_err(|e| DbErr::Custom(e.to_string()))?,
            &settings,
        )
        .await?;
        let caught_up = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_last_wal_receive_lsn() IS NOT NULL
                    AND pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
            [written.clone().into()],
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let row = standby.query_one_raw(caught_up.clone()).await?;
            if row.map(|r| r.try_get_by_index::<bool>(0)).transpose()? == Some(true) {
                return standby.close().await;
            }
            if Instant::now() > deadline {
                return Err(DbErr::Custom(format!(
                    "the replica did not replay {written} within a minute; its log:\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines of the replica's server log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.server.log)
    }

    /// Stops the replica (fast shutdown), as an operator or a failing host would.
    pub fn stop(&self) -> Result<(), ClusterError> {
        self.server.stop("fast")
    }

    /// Starts it again after [`Replica::stop`]; it resumes streaming where it stopped.
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.server.start()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.server.stop("immediate");
        let _ = run(drop_slot(&self.server.bins, &self.primary, &self.slot));
        let _ = fs::remove_dir_all(&self.dir);
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// `psql` running `sql` on the primary as the URL's user.
fn on_primary(bins: &PgBinaries, primary: &DatabaseUrl, sql: &str) -> Command {
    let mut psql = Command::new(bins.tool("psql"));
    psql.args([
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "--host",
        primary.host(),
    ])
    .args(["--port", &primary.port().to_string()])
    .args(["--username", primary.user(), "--dbname", primary.database()])
    .args(["--command", sql])
    .env("PGPASSWORD", primary.password().expose_secret());
    psql
}

/// Drops `slot` once no walsender uses it (the stopped replica's may linger a moment).
fn drop_slot(bins: &PgBinaries, primary: &DatabaseUrl, slot: &str) -> Command {
    on_primary(
        bins,
        primary,
        &format!(
            "DO $$ BEGIN
                 FOR i IN 1..50 LOOP
                     IF NOT EXISTS (SELECT FROM pg_replication_slots
                                    WHERE slot_name = '{slot}' AND active) THEN
                         PERFORM pg_drop_replication_slot(slot_name)
                            FROM pg_replication_slots WHERE slot_name = '{slot}';
                         RETURN;
                     END IF;
                     PERFORM pg_sleep(0.1);
                 END LOOP;
             END $$"
        ),
    )
}
