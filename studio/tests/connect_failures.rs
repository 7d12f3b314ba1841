//! The `studio` binary against every way a first connection fails: it exits 1 within seconds,
//! before it listens, with one `Error:` line naming the cause and the masked URL, and no
//! backtrace even with `RUST_BACKTRACE=1`.

use harness::connect_faults::{self, assert_cli_failed_fast, run_timed};

#[tokio::test]
async fn the_studio_fails_fast_naming_the_cause() {
    for fault in connect_faults::all().await {
        let (took, output) = run_timed(
            fault
                .command(env!("CARGO_BIN_EXE_studio"), &["--port", "0"])
                .stdin(std::process::Stdio::null()),
        );
        assert_cli_failed_fast("studio", &fault, took, &output);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !stdout.contains("http://"),
            "it never said it listens: {stdout}"
        );
    }
}
