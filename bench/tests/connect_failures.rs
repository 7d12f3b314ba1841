//! The `bench` binary against every way a first connection fails: it exits 1 within seconds,
//! before it measures anything, with one `Error:` line naming the cause and the masked URL (of
//! the server's `postgres` database, where it creates its own), and no backtrace even with
//! `RUST_BACKTRACE=1`. A missing database is none of its faults: it uses only the server of
//! `DATABASE_URL`.

use harness::connect_faults::{self, assert_cli_failed_fast, run_timed};

#[tokio::test]
async fn the_bench_fails_fast_naming_the_cause() {
    for fault in connect_faults::all().await {
        if fault.name == connect_faults::missing_database().name {
            continue;
        }
        let (took, output) = run_timed(&mut fault.command(
            env!("CARGO_BIN_EXE_bench"),
            &["--smoke", "--no-drizzle", "--no-node-workers"],
        ));
        assert_cli_failed_fast("bench", &fault, took, &output);
    }
}
