//! `migration up` through PgBouncer 1.25, which tracks prepared statements: the same refusals and
//! the same single application as through Debian's 1.18 (`pooler.rs`), whether or not the
//! operator also set `DB_POOLER_PREPARED_STATEMENTS` (the harness picks 1.25 by this binary's
//! name).

#[path = "pooler.rs"]
mod pooler;

#[test]
fn this_binary_migrates_through_pgbouncer_1_25() {
    let version = harness::topology::pgbouncer().version();
    assert!(version.starts_with("PgBouncer 1.25"), "{version}");
}
