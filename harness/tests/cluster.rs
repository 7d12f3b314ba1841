//! The throwaway cluster the harness starts: it survives a restart of its server, and it is
//! removed when its process dies, however abruptly.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use dev_servers::ThrowawayCluster;
use sea_orm::ConnectionTrait;

const CHILD_VAR: &str = "THROWAWAY_CLUSTER_CHILD";

/// Not a test of its own: run in a child process by the test below, it starts a cluster, says
/// where, and aborts (no destructor, no atexit).
#[test]
#[ignore = "helper process for throwaway_cluster_is_removed_when_its_process_aborts"]
fn child_starts_a_cluster_then_aborts() {
    if std::env::var_os(CHILD_VAR).is_none() {
        return;
    }
    let cluster = ThrowawayCluster::start().unwrap();
    let url = cluster.url("postgres").unwrap();
    println!("CLUSTER_PORT={}", url.port());
    println!("CLUSTER_DIR={}", cluster.dir().display());
    std::process::abort();
}

fn port_is_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn throwaway_cluster_is_removed_when_its_process_aborts() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_starts_a_cluster_then_aborts",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_VAR, "1")
        .output()
        .unwrap();
    assert!(!output.status.success(), "the child aborted");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or_else(|| panic!("child printed no {key}: {stdout}"))
            .to_owned()
    };
    let dir = PathBuf::from(value("CLUSTER_DIR="));
    let port: u16 = value("CLUSTER_PORT=").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (dir.exists() || port_is_open(port)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert!(
        !port_is_open(port),
        "the server on port {port} was left running"
    );
}

#[tokio::test]
async fn a_killed_server_refuses_connections_until_restarted_with_its_data() {
    let cluster = ThrowawayCluster::start().unwrap();
    let url = cluster.url("postgres").unwrap();
    let db = harness::connect(&url, 1).await;
    db.execute_unprepared("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)")
        .await
        .unwrap();
    db.close().await.unwrap();
    cluster.kill().unwrap();
    let impatient = db_connect::PoolSettings {
        connect_timeout: Duration::from_secs(1),
        acquire_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    assert!(db_connect::connect(&url, &impatient).await.is_err());
    cluster.restart().unwrap();
    let db = harness::connect(&url, 1).await;
    assert_eq!(harness::scalar(&db, "SELECT count(*) FROM kept").await, 1);
    let dir = cluster.dir().to_path_buf();
    drop(cluster);
    assert!(!dir.exists(), "dropping the cluster removes its folder");
}
