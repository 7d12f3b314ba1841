//! A service that upgraded PgBouncer before setting `DB_POOLER_PREPARED_STATEMENTS`: the inlining
//! pool through PgBouncer 1.25 in transaction mode (5 server connections per database), which
//! the binary's name picks (see `harness::topology`). It runs what exercises the pooler itself:
//! the inliner's values and the pool's transactions (`pooler/`), session state, values, many
//! clients on few server connections (`pgbouncer/shared.rs`) and the reliability races. The
//! service helper tests are left to `through_pgbouncer` (1.18) and
//! `through_pgbouncer_125_prepared`: in this mode every statement is the same simple-protocol
//! query on either PgBouncer.

#[path = "reliability_events.rs"]
mod reliability_events;
#[path = "reliability_input.rs"]
mod reliability_input;
#[path = "reliability_integrity.rs"]
mod reliability_integrity;

#[path = "pooler/traces.rs"]
mod pooler_traces;
#[path = "pooler/transactions.rs"]
mod pooler_transactions;
#[path = "pooler/values.rs"]
mod pooler_values;
#[path = "pgbouncer/shared.rs"]
mod shared;

mod pooler {
    use db_connect::PooledStatements;
    use dev_servers::PgBouncerRelease;
    use harness::topology;

    pub(crate) use crate::shared::{as_the_server_sees_it, pool_through, warm_pgbouncer};

    #[test]
    fn this_binary_runs_through_pgbouncer_1_25_with_values_inlined() {
        assert!(topology::through_pgbouncer());
        assert_eq!(topology::pgbouncer_release(), PgBouncerRelease::V1_25);
        assert_eq!(topology::pooled_statements(), PooledStatements::Inlined);
        assert!(
            topology::pgbouncer()
                .version()
                .starts_with("PgBouncer 1.25"),
            "{}",
            topology::pgbouncer().version()
        );
    }
}
