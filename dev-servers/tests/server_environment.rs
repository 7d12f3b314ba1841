//! A server process starts with a cleared environment: a secret this process holds (as
//! `load_dotenv` puts `.env` into it) never reaches `/proc/<postmaster>/environ`, where anyone
//! running as the server's user can read it. One test in its own binary, since it sets
//! environment variables of the process.

use std::fs;

use dev_servers::ThrowawayCluster;

#[test]
fn a_server_never_inherits_this_processs_environment() {
    const CANARY: &str = "dotenv-secret-canary-51c9";
    // SAFETY: this binary's only test; nothing else reads the environment meanwhile.
    unsafe {
        std::env::set_var("APP_SECRET_FROM_DOTENV", CANARY);
        std::env::set_var("LC_MESSAGES", "C");
    }
    let cluster = ThrowawayCluster::start().unwrap();
    let pid_file = fs::read_to_string(cluster.dir().join("data/postmaster.pid")).unwrap();
    let pid = pid_file.lines().next().unwrap().trim();
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        !environ.iter().any(|v| v.contains(CANARY)),
        "the postmaster inherited a secret: {environ:?}"
    );
    assert!(
        environ.iter().any(|v| v.starts_with("PATH=")),
        "{environ:?}"
    );
    assert!(environ.iter().any(|v| v == "LC_MESSAGES=C"), "{environ:?}");
}
