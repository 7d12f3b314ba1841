//! The `studio` binary's own promises: where it listens, what it prints, and that a bad
//! DATABASE_URL is named without its password.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
};

use harness::TestDb;
use secrecy::ExposeSecret;

/// The binary started with `args` on `db`, and the first line it prints.
fn spawn(db: &TestDb, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_studio"))
        .args(args)
        .env("DATABASE_URL", db.url().expose().expose_secret())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// Starts the binary with `args`, returns its first stdout line and, after stopping it, stderr.
fn first_line(db: &TestDb, args: &[&str]) -> (String, String) {
    let (mut child, line) = spawn(db, args);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (line, stderr)
}

#[tokio::test]
async fn loopback_by_default_and_a_warning_for_any_other_host() {
    let db = TestDb::migrated().await;
    let (line, stderr) = first_line(&db, &["--port", "0"]);
    assert!(line.contains("http://127.0.0.1:"), "{line}");
    assert!(line.contains("(read-only)"), "{line}");
    assert!(!stderr.contains("WARNING"), "{stderr}");

    let (line, stderr) = first_line(&db, &["--port", "0", "--host", "0.0.0.0", "--write"]);
    assert!(line.contains("http://0.0.0.0:"), "{line}");
    assert!(line.contains("write mode"), "{line}");
    assert!(
        stderr.contains("WARNING: the studio listens on 0.0.0.0:")
            && stderr.contains("reachable from other machines")
            && stderr.contains("change or delete them"),
        "{stderr}"
    );
    let password = db.url().password().expose_secret().to_owned();
    assert!(!line.contains(&password) && !stderr.contains(&password));
}

#[test]
fn a_malformed_database_url_is_named_without_its_password() {
    let output = Command::new(env!("CARGO_BIN_EXE_studio"))
        .args(["--database-url", "postgres://app:hunter2@db:notaport/app"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--database-url is invalid"), "{stderr}");
    assert!(stderr.contains("port"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// `GET /` with `Host: host` on the studio at `addr`, by hand over TCP: the status code.
fn status_for_host(addr: &str, host: &str) -> u16 {
    use std::{io::Write, net::TcpStream};
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {reply}"))
}

/// With `--host 0.0.0.0` the studio is reachable from other machines, and a web page anywhere
/// can point a DNS name of its own at it (DNS rebinding): it must still answer only to its
/// loopback names and each `--allowed-host`.
#[tokio::test]
async fn beyond_loopback_only_the_allowed_host_names_are_answered() {
    let db = TestDb::migrated().await;
    let args = [
        "--port",
        "0",
        "--host",
        "0.0.0.0",
        "--allowed-host",
        "studio.internal",
    ];
    let (mut child, line) = spawn(&db, &args);
    let port = line
        .split("http://0.0.0.0:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line}"))
        .to_owned();
    let addr = format!("127.0.0.1:{port}");
    let statuses = [
        status_for_host(&addr, &format!("attacker.example:{port}")),
        status_for_host(&addr, &format!("studio.internal:{port}")),
        status_for_host(&addr, &format!("localhost:{port}")),
    ];
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(statuses, [403, 200, 200]);
}

/// A URL on the command line is in every user's `ps`: `--help` says so and points at
/// DATABASE_URL.
#[test]
fn the_help_says_a_database_url_flag_shows_in_the_process_list() {
    let output = Command::new(env!("CARGO_BIN_EXE_studio"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    let flag = help
        .split("--database-url <URL>")
        .nth(1)
        .unwrap_or_else(|| panic!("no --database-url in {help}"));
    assert!(
        flag.contains("(`ps`)") && flag.contains("prefer DATABASE_URL"),
        "{help}"
    );
}
