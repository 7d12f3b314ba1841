//! The Citus cluster the harness starts (`dev_servers::CitusCluster`) and the harness's Citus
//! mode: nodes that reach each other over their trusted socket while clients need a password,
//! databases on every node, copies of a frozen template that are complete distributed
//! databases, a worker added later, clean-up when the process dies, and a clear failure where
//! Citus is not installed.

use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use dev_servers::CitusCluster;
use harness::{citus, scalar, text_rows};
use sea_orm::ConnectionTrait;

const CHILD_VAR: &str = "CITUS_CLUSTER_CHILD";

/// `sql`'s text rows on every node's copy of `database` (coordinator first).
async fn on_every_node(database: &str, sql: &str) -> Vec<Vec<Vec<Option<String>>>> {
    let mut all = Vec::new();
    for url in citus::cluster().node_urls(database).unwrap() {
        let conn = harness::connect(&url, 1).await;
        all.push(text_rows(&conn, sql).await);
        conn.close().await.ok();
    }
    all
}

fn text(value: &str) -> Vec<Vec<Option<String>>> {
    vec![vec![Some(value.to_owned())]]
}

#[tokio::test]
async fn the_nodes_reach_each_other_over_the_socket_and_clients_need_the_password() {
    let cluster = citus::cluster();
    let coordinator = harness::connect(&cluster.coordinator_url("postgres").unwrap(), 1).await;
    let nodes = text_rows(
        &coordinator,
        "SELECT nodename, nodeport::text, groupid::text FROM pg_dist_node ORDER BY groupid",
    )
    .await;
    let host = cluster.node_host();
    let mut expected = vec![vec![
        Some(host.clone()),
        Some(cluster.coordinator_port().to_string()),
        Some("0".into()),
    ]];
    for (i, port) in cluster.worker_ports().iter().enumerate() {
        expected.push(vec![
            Some(host.clone()),
            Some(port.to_string()),
            Some((i + 1).to_string()),
        ]);
    }
    assert_eq!(
        nodes, expected,
        "the coordinator and both workers, by socket"
    );
    // Every node connects to every node (as the superuser, with no password anywhere).
    let health = text_rows(
        &coordinator,
        "SELECT count(*)::text, count(*) FILTER (WHERE result)::text
           FROM citus_check_cluster_node_health()",
    )
    .await;
    assert_eq!(health, vec![vec![Some("9".into()), Some("9".into())]]);
    assert!(
        host.len() + "/.s.PGSQL.65535".len() <= 107,
        "{host} is too long for a socket path"
    );
    let mode = std::fs::metadata(&host).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o700,
        "only the servers' user reaches the trusted socket"
    );

    let url = cluster.coordinator_url("postgres").unwrap();
    let wrong = db_connect::DatabaseUrl::new(
        url.user(),
        "not-the-password".to_owned().into(),
        url.host(),
        url.port(),
        "postgres",
    )
    .unwrap();
    let refused = db_connect::connect(&wrong, &db_connect::PoolSettings::default())
        .await
        .expect_err("a wrong password is refused over TCP");
    assert!(
        refused
            .to_string()
            .contains("password authentication failed"),
        "{refused}"
    );
    coordinator.close().await.ok();
}

#[tokio::test]
async fn ssl_stays_off_and_the_settings_tests_need_are_on_every_node() {
    let cluster = citus::cluster();
    let settings = on_every_node(
        "postgres",
        "SELECT concat_ws(' ', current_setting('ssl'), current_setting('wal_level'),
                current_setting('citus.shard_count'), current_setting('fsync'),
                current_setting('citus.node_conninfo'), current_setting('citus.local_hostname'),
                current_setting('max_worker_processes'), current_setting('max_connections'),
                current_setting('citus.max_adaptive_executor_pool_size'),
                (SELECT extversion FROM pg_extension WHERE extname = 'citus'))",
    )
    .await;
    let s = cluster.settings();
    let expected = format!(
        "off logical {} off sslmode=disable {} {} {} {} 13.2-1",
        s.shard_count,
        cluster.node_host(),
        s.max_worker_processes,
        s.max_connections,
        s.executor_pool_size
    );
    assert_eq!(settings, vec![text(&expected); 3]);
    for entry in std::fs::read_dir(cluster.dir()).unwrap().flatten() {
        let data = entry.path().join("data");
        if data.is_dir() {
            assert!(
                !data.join("server.crt").exists(),
                "Citus wrote a certificate into {}",
                data.display()
            );
        }
    }
}

#[tokio::test]
async fn a_database_is_created_on_every_node_with_citus_and_the_nodes_registered() {
    let db = citus::empty().await;
    assert!(db.on_citus());
    let extension = on_every_node(
        db.name(),
        "SELECT extname::text FROM pg_extension WHERE extname = 'citus'",
    )
    .await;
    assert_eq!(extension, vec![text("citus"); 3]);
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM pg_dist_node").await,
        3
    );
    // A distributed table spreads over both workers, two shards each.
    db.conn()
        .execute_unprepared(
            "CREATE TABLE t (k int PRIMARY KEY); SELECT create_distributed_table('t', 'k');
             INSERT INTO t SELECT generate_series(1, 100)",
        )
        .await
        .unwrap();
    let placements = text_rows(
        db.conn(),
        "SELECT nodeport::text, count(*)::text FROM citus_shards WHERE table_name = 't'::regclass
          GROUP BY nodeport ORDER BY nodeport",
    )
    .await;
    let mut ports = citus::cluster().worker_ports();
    ports.sort();
    let expected: Vec<_> = ports
        .iter()
        .map(|p| vec![Some(p.to_string()), Some("2".into())])
        .collect();
    assert_eq!(placements, expected);
}

/// Rows of `t`'s shards on each worker (each worker's local shard tables, summed).
async fn rows_on_workers(database: &str) -> Vec<i64> {
    let mut counts = Vec::new();
    for url in citus::cluster().worker_urls(database).unwrap() {
        let conn = harness::connect(&url, 1).await;
        // Citus hides shards from pg_class on a worker unless told not to.
        conn.execute_unprepared("SET citus.override_table_visibility = off")
            .await
            .unwrap();
        let shards = text_rows(
            &conn,
            "SELECT relname::text FROM pg_class WHERE relname ~ '^t_[0-9]+$' AND relkind = 'r'",
        )
        .await;
        let mut sum = 0;
        for shard in shards {
            let name = shard[0].clone().unwrap();
            sum += scalar(&conn, &format!("SELECT count(*) FROM {name}")).await;
        }
        counts.push(sum);
        conn.close().await.ok();
    }
    counts
}

async fn until_dropped_everywhere(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let present = on_every_node(
            "postgres",
            &format!("SELECT count(*)::text FROM pg_database WHERE datname = '{name}'"),
        )
        .await;
        if present.iter().all(|rows| rows == &text("0")) {
            return;
        }
        // Not a timing assertion: only a bound on a hang.
        assert!(
            Instant::now() < deadline,
            "{name} is still on some node: {present:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn copies_of_a_frozen_template_are_complete_distributed_databases_of_their_own() {
    let cluster = citus::cluster();
    let template = format!("citus_template_{}", std::process::id());
    cluster.create_database(&template).unwrap();
    let setup = harness::connect(&cluster.coordinator_url(&template).unwrap(), 1).await;
    setup
        .execute_unprepared(
            "CREATE TABLE r (k int PRIMARY KEY); SELECT create_reference_table('r');
             INSERT INTO r VALUES (1), (2);
             CREATE TABLE t (k int PRIMARY KEY, r int REFERENCES r);
             SELECT create_distributed_table('t', 'k');
             INSERT INTO t SELECT g, 1 + g % 2 FROM generate_series(1, 1000) g",
        )
        .await
        .unwrap();
    setup.close().await.ok();
    let in_template = rows_on_workers(&template).await;
    assert_eq!(in_template.iter().sum::<i64>(), 1000);
    assert!(in_template.iter().all(|&n| n > 0), "{in_template:?}");
    cluster.freeze_template(&template).unwrap();
    let (a, b) = (format!("{template}_a"), format!("{template}_b"));
    cluster.clone_database(&template, &a).unwrap();
    cluster.clone_database(&template, &b).unwrap();

    // Each copy holds each worker's shards as the template did, and answers through the
    // coordinator like it: writes to shards on both workers, a count over all shards, a join
    // with the reference table, its foreign key.
    assert_eq!(rows_on_workers(&a).await, in_template);
    let conn_a = harness::connect(&cluster.coordinator_url(&a).unwrap(), 1).await;
    conn_a
        .execute_unprepared("INSERT INTO t VALUES (1001, 2); DELETE FROM t WHERE k <= 10")
        .await
        .unwrap();
    assert_eq!(scalar(&conn_a, "SELECT count(*) FROM t").await, 991);
    assert_eq!(
        scalar(
            &conn_a,
            "SELECT count(*) FROM t JOIN r ON r.k = t.r WHERE r.k = 2"
        )
        .await,
        496
    );
    let refused = conn_a
        .execute_unprepared("INSERT INTO t VALUES (2000, 3)")
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("foreign key"), "{refused}");
    // The other copy and the template are untouched.
    assert_eq!(rows_on_workers(&b).await, in_template);
    let conn_b = harness::connect(&cluster.coordinator_url(&b).unwrap(), 1).await;
    assert_eq!(scalar(&conn_b, "SELECT count(*) FROM t").await, 1000);
    conn_a.close().await.ok();
    conn_b.close().await.ok();
    for name in [&a, &b, &template] {
        cluster.drop_database(name).unwrap();
    }
    for name in [&a, &b, &template] {
        until_dropped_everywhere(name).await;
    }
}

#[tokio::test]
async fn a_test_database_is_a_copy_on_every_node_dropped_from_every_node() {
    let db = citus::migrated().await;
    let other = citus::migrated().await;
    assert!(db.on_citus());
    assert_eq!(db.url().port(), db.direct_url().port());
    assert_eq!(db.url().port(), citus::cluster().coordinator_port());
    let present = on_every_node(
        "postgres",
        &format!(
            "SELECT count(*)::text FROM pg_database WHERE datname = '{}'",
            db.name()
        ),
    )
    .await;
    assert_eq!(present, vec![text("1"); 3]);
    // Migrated, and a database of its own.
    let applied = scalar(db.conn(), "SELECT count(*) FROM seaql_migrations").await;
    let expected = scalar(other.conn(), "SELECT count(*) FROM seaql_migrations").await;
    assert!(applied > 0 && applied == expected, "{applied} / {expected}");
    db.conn()
        .execute_unprepared(
            "INSERT INTO users (id, name, email) VALUES ('only-here', 'Only', 'only@example.com')",
        )
        .await
        .unwrap();
    assert_eq!(
        scalar(
            other.conn(),
            "SELECT count(*) FROM users WHERE id = 'only-here'"
        )
        .await,
        0
    );
    let name = db.name().to_owned();
    drop(db);
    until_dropped_everywhere(&name).await;
}

#[tokio::test]
async fn a_worker_added_later_joins_one_database_and_takes_a_shard_with_its_rows() {
    let cluster = citus::cluster();
    let db = citus::empty().await;
    db.conn()
        .execute_unprepared(
            "CREATE TABLE t (k int PRIMARY KEY); SELECT create_distributed_table('t', 'k');
             INSERT INTO t SELECT generate_series(1, 500)",
        )
        .await
        .unwrap();
    let worker = cluster.add_worker().unwrap();
    // Started, but in no database's cluster yet.
    assert!(!cluster.worker_ports().contains(&worker.port()));
    let postgres = harness::connect(&cluster.coordinator_url("postgres").unwrap(), 1).await;
    assert_eq!(
        scalar(
            &postgres,
            &format!(
                "SELECT count(*) FROM pg_dist_node WHERE nodeport = {}",
                worker.port()
            )
        )
        .await,
        0
    );
    postgres.close().await.ok();
    cluster.register_worker(&worker, db.name()).unwrap();
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM pg_dist_node").await,
        4
    );
    let shard = text_rows(
        db.conn(),
        "SELECT shardid::text, nodeport::text FROM citus_shards WHERE table_name = 't'::regclass
          ORDER BY shardid LIMIT 1",
    )
    .await;
    let (shard, from) = (shard[0][0].clone().unwrap(), shard[0][1].clone().unwrap());
    db.conn()
        .execute_unprepared(&format!(
            "SELECT citus_move_shard_placement({shard}, '{host}', {from}, '{host}', {to},
                 shard_transfer_mode => 'block_writes')",
            host = cluster.node_host(),
            to = worker.port()
        ))
        .await
        .unwrap();
    assert_eq!(
        text_rows(
            db.conn(),
            &format!("SELECT nodeport::text FROM citus_shards WHERE shardid = {shard}")
        )
        .await,
        text(&worker.port().to_string())
    );
    let on_new = harness::connect(&worker.url(db.name()).unwrap(), 1).await;
    let moved = scalar(&on_new, &format!("SELECT count(*) FROM t_{shard}")).await;
    assert!(moved > 0, "the moved shard holds its rows");
    on_new.close().await.ok();
    assert_eq!(scalar(db.conn(), "SELECT count(*) FROM t").await, 500);
    assert_eq!(
        scalar(db.conn(), "SELECT count(DISTINCT k) FROM t").await,
        500
    );
    // Moved back, the worker can go: dropping it stops it and removes its folder.
    db.conn()
        .execute_unprepared(&format!(
            "SELECT citus_move_shard_placement({shard}, '{host}', {to}, '{host}', {from},
                 shard_transfer_mode => 'block_writes');
             SELECT citus_remove_node('{host}', {to})",
            host = cluster.node_host(),
            to = worker.port()
        ))
        .await
        .unwrap();
    let (dir, port) = (worker.dir().to_path_buf(), worker.port());
    drop(worker);
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert!(!port_is_open(port), "the worker still listens on {port}");
    assert_eq!(scalar(db.conn(), "SELECT count(*) FROM t").await, 500);
}

#[tokio::test]
async fn a_cluster_of_its_own_has_its_settings_and_is_gone_once_dropped() {
    let settings = dev_servers::CitusSettings {
        shard_count: 2,
        executor_pool_size: 1,
        max_connections: 50,
        max_worker_processes: 20,
    };
    let cluster =
        tokio::task::spawn_blocking(move || CitusCluster::start_with(1, settings).unwrap())
            .await
            .unwrap();
    assert_eq!(cluster.settings(), settings);
    assert_eq!(cluster.worker_ports().len(), 1);
    let urls = cluster.node_urls("postgres").unwrap();
    assert_eq!(urls.len(), 2);
    for url in &urls {
        let conn = harness::connect(url, 1).await;
        let shown = text_rows(
            &conn,
            "SELECT concat_ws(' ', current_setting('citus.shard_count'),
                    current_setting('citus.max_adaptive_executor_pool_size'),
                    current_setting('max_connections'), current_setting('max_worker_processes'))",
        )
        .await;
        assert_eq!(shown, text("2 1 50 20"));
        conn.close().await.ok();
    }
    let coordinator = harness::connect(&urls[0], 1).await;
    assert_eq!(
        scalar(&coordinator, "SELECT count(*) FROM pg_dist_node").await,
        2
    );
    coordinator.close().await.ok();
    let (dir, ports) = (cluster.dir().to_path_buf(), urls.iter().map(|u| u.port()));
    let ports: Vec<u16> = ports.collect();
    drop(cluster);
    assert!(!dir.exists(), "{} was left behind", dir.display());
    for port in ports {
        assert!(!port_is_open(port), "a node still listens on {port}");
    }
}

#[test]
fn a_node_that_cannot_start_fails_the_cluster_with_its_log_and_leaves_nothing_behind() {
    let settings = dev_servers::CitusSettings {
        max_connections: 0,
        ..Default::default()
    };
    let err = CitusCluster::start_with(1, settings).unwrap_err();
    let dev_servers::ClusterError::StartFailed { log, tail } = &err else {
        panic!("not a start failure: {err}");
    };
    assert!(tail.contains("max_connections"), "{tail}");
    let cluster_dir = log.parent().and_then(|node| node.parent()).unwrap();
    assert!(
        !cluster_dir.exists(),
        "{} was left behind",
        cluster_dir.display()
    );
}

/// Not a test of its own: run in a child process by the tests below. With
/// `CITUS_CLUSTER_CHILD=abort` it starts a cluster and a worker outside it, says where, and
/// aborts (no destructor, no atexit); with `=start` it prints what starting one gave.
#[test]
#[ignore = "helper process for the tests below"]
fn child_starts_a_citus_cluster() {
    match std::env::var(CHILD_VAR).as_deref() {
        Ok("abort") => {
            let cluster = CitusCluster::start(1).unwrap();
            let worker = cluster.add_worker().unwrap();
            let mut ports = vec![cluster.coordinator_port()];
            ports.extend(cluster.worker_ports());
            ports.push(worker.port());
            println!(
                "CLUSTER_DIRS={},{}",
                cluster.dir().display(),
                worker.dir().display()
            );
            println!(
                "CLUSTER_PORTS={}",
                ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            );
            std::process::abort();
        }
        Ok("testdb") => {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let on_citus = runtime.block_on(async { harness::TestDb::migrated().await.on_citus() });
            println!("ON_CITUS={on_citus}");
        }
        Ok("start") => match CitusCluster::start(1) {
            Ok(_) => println!("STARTED"),
            Err(err) => println!("ERROR={err}"),
        },
        _ => {}
    }
}

fn child(mode: &str, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_starts_a_citus_cluster", "--ignored"])
        .args(["--nocapture", "--test-threads", "1"])
        .env(CHILD_VAR, mode)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn value(stdout: &str, key: &str) -> String {
    stdout
        .lines()
        .find_map(|line| Some(&line[line.find(key)? + key.len()..]))
        .unwrap_or_else(|| panic!("child printed no {key}: {stdout}"))
        .to_owned()
}

fn port_is_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn the_cluster_and_an_added_worker_are_removed_when_their_process_aborts() {
    let stdout = child("abort", &[]);
    let dirs: Vec<PathBuf> = value(&stdout, "CLUSTER_DIRS=")
        .split(',')
        .map(PathBuf::from)
        .collect();
    let ports: Vec<u16> = value(&stdout, "CLUSTER_PORTS=")
        .split(',')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 3, "coordinator, worker, added worker");
    let left = || dirs.iter().any(|d| d.exists()) || ports.iter().any(|&p| port_is_open(p));
    let deadline = Instant::now() + Duration::from_secs(30);
    while left() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for dir in &dirs {
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
    for port in ports {
        assert!(
            !port_is_open(port),
            "a node on port {port} was left running"
        );
    }
}

#[test]
fn test_databases_are_on_citus_in_a_process_told_so_and_only_there() {
    assert!(
        !citus::enabled(),
        "this binary's name does not ask for Citus"
    );
    let told = child("testdb", &[("TEST_THROUGH_CITUS", "1".as_ref())]);
    assert_eq!(value(&told, "ON_CITUS="), "true");
    let not_told = child("testdb", &[("TEST_THROUGH_CITUS", "0".as_ref())]);
    assert_eq!(value(&not_told, "ON_CITUS="), "false");
}

#[test]
fn without_citus_starting_fails_with_the_command_that_installs_it() {
    // Server binaries whose pg_config points at folders without Citus.
    let fake = tempfile::tempdir().unwrap();
    let lib = fake.path().join("lib");
    let share = fake.path().join("share");
    std::fs::create_dir_all(share.join("extension")).unwrap();
    std::fs::create_dir(&lib).unwrap();
    let script = |name: &str, body: &str| {
        let path = fake.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    for tool in ["initdb", "pg_ctl", "postgres", "createdb"] {
        script(tool, "exit 1");
    }
    script(
        "pg_config",
        &format!(
            "case $1 in --pkglibdir) echo {};; --sharedir) echo {};; --version) echo 'PostgreSQL 16.4';; esac",
            lib.display(),
            share.display()
        ),
    );
    let start = || child("start", &[("PG_BINDIR", fake.path().as_os_str())]);
    let error = value(&start(), "ERROR=");
    assert!(
        error.contains(&format!("{}/citus.so is missing", lib.display())),
        "{error}"
    );
    assert!(error.contains("`.ci/install-citus`"), "{error}");
    assert!(
        error.contains("apt-get install -y postgresql-16-citus-13.2"),
        "{error}"
    );

    // The library alone is not enough: the extension's control file must be there too.
    std::fs::write(lib.join("citus.so"), "").unwrap();
    let error = value(&start(), "ERROR=");
    assert!(
        error.contains(&format!(
            "{}/extension/citus.control is missing",
            share.display()
        )),
        "{error}"
    );
}
