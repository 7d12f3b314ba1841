//! `cargo xtask` prints a user's error as one line, without a backtrace even with
//! `RUST_BACKTRACE=1` (anyhow would print one).

#[test]
fn an_error_is_one_line_without_a_backtrace() {
    let missing = std::env::temp_dir().join("no-such-folder/SCHEMA.md");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("contract")
        .arg("--shared")
        .arg(&missing)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("Error: "), "{stderr}");
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}
