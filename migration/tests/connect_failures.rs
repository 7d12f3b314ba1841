//! The `migration` binary against every way a first connection fails: each command that
//! connects (`up`, `down`, `status`, `seed`) exits 1 within seconds with one `Error:` line naming
//! the cause and the masked URL, and no backtrace even with `RUST_BACKTRACE=1`.

use harness::connect_faults::{self, assert_cli_failed_fast, run_timed};

const COMMANDS: &[&[&str]] = &[&["up"], &["down"], &["status"], &["seed"]];

#[tokio::test]
async fn every_command_that_connects_fails_fast_naming_the_cause() {
    let mut faults = connect_faults::all().await;
    faults.push(connect_faults::tls_required().await);
    for fault in &faults {
        for args in COMMANDS {
            let (took, output) =
                run_timed(&mut fault.command(env!("CARGO_BIN_EXE_migration"), args));
            assert_cli_failed_fast(
                &format!("migration {}", args.join(" ")),
                fault,
                took,
                &output,
            );
        }
    }
}

#[test]
fn a_malformed_url_is_one_line_without_a_backtrace() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_migration"))
        .arg("status")
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", "postgresql://app:secret@db/app")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "Error: DATABASE_URL is invalid: database URL has no port (PostgreSQL's default is 5432); expected postgresql://user:password@host:port/database"
    );
}
