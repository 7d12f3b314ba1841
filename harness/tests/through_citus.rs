//! Every service helper test and the reliability races again, on a Citus cluster (a coordinator
//! and two workers, four shards per distributed table): the harness gives this binary's test
//! databases on Citus because of the binary's name (see `harness::citus`), each a copy on every
//! node of a template that `migration::apply_pending` built and distributed.
//!
//! Beside them: the placement every table must have there, so a schema that silently stayed on
//! the coordinator cannot pass these tests as if it were distributed.

#[path = "reliability_events.rs"]
mod reliability_events;
#[path = "reliability_input.rs"]
mod reliability_input;
#[path = "reliability_integrity.rs"]
mod reliability_integrity;
#[path = "service_agents.rs"]
mod service_agents;
#[path = "service_auth.rs"]
mod service_auth;
#[path = "service_errors.rs"]
mod service_errors;
#[path = "service_events.rs"]
mod service_events;
#[path = "service_integrations.rs"]
mod service_integrations;
#[path = "service_organizations.rs"]
mod service_organizations;
#[path = "service_tools.rs"]
mod service_tools;
#[path = "tenant_roles.rs"]
mod tenant_roles;
#[path = "workers.rs"]
mod workers;

mod placement {
    use harness::{TestDb, citus, text_rows};

    /// Where each table lives on Citus (`docs/deployment.md`, "Scaling out on Citus"): the tenant
    /// tables distributed by `organization_id` in one co-location group, the small shared ones
    /// replicated to every node, the user-scoped Better Auth tables on the coordinator in
    /// Citus's metadata (for their foreign keys to `users`).
    const PLACEMENT: &[(&str, &str)] = &[
        ("accounts", "local"),
        ("agent_runs", "distributed"),
        ("github_installations", "distributed"),
        ("invitations", "distributed"),
        ("linear_connections", "distributed"),
        ("linear_events", "distributed"),
        ("members", "distributed"),
        ("organizations", "reference"),
        ("sessions", "local"),
        ("slack_connections", "distributed"),
        ("slack_events", "distributed"),
        ("tool_calls", "distributed"),
        ("tools", "reference"),
        ("two_factors", "local"),
        ("user_tools", "local"),
        ("users", "reference"),
        ("webhook_routes", "reference"),
    ];
    /// Tables that stay plain PostgreSQL tables on the coordinator (no foreign key, no shard).
    const PLAIN: &[&str] = &["seaql_migrations", "unrouted_events", "verifications"];

    #[tokio::test]
    async fn every_table_has_its_placement_and_the_tenant_tables_share_one_co_location_group() {
        let db = TestDb::migrated().await;
        assert!(db.on_citus(), "this binary runs on Citus");
        let placed = text_rows(
            db.conn(),
            "SELECT table_name::text, citus_table_type,
                    COALESCE(distribution_column, '')::text, colocation_id::text, shard_count::text
               FROM citus_tables ORDER BY 1",
        )
        .await;
        let found: Vec<(String, String)> = placed
            .iter()
            .map(|row| (row[0].clone().unwrap(), row[1].clone().unwrap()))
            .collect();
        let expected: Vec<(String, String)> = PLACEMENT
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect();
        assert_eq!(
            found, expected,
            "the tables' placement on Citus (did the distribution migration run?)"
        );
        let distributed: Vec<_> = placed
            .iter()
            .filter(|row| row[1].as_deref() == Some("distributed"))
            .collect();
        let shards = citus::cluster().settings().shard_count.to_string();
        for row in &distributed {
            assert_eq!(row[2].as_deref(), Some("organization_id"), "{row:?}");
            assert_eq!(row[3], distributed[0][3], "one co-location group: {row:?}");
            assert_eq!(row[4].as_deref(), Some(shards.as_str()), "{row:?}");
        }
        let plain = text_rows(
            db.conn(),
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                AND NOT EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = c.oid)
              ORDER BY 1",
        )
        .await;
        let plain: Vec<_> = plain.into_iter().map(|r| r[0].clone().unwrap()).collect();
        assert_eq!(plain, PLAIN, "tables outside Citus's metadata");
    }

    #[tokio::test]
    async fn the_shards_of_the_tenant_tables_are_spread_over_both_workers() {
        let db = TestDb::migrated().await;
        let spread = text_rows(
            db.conn(),
            "SELECT nodeport::text, count(*)::text FROM citus_shards
              WHERE citus_table_type = 'distributed' GROUP BY nodeport ORDER BY nodeport",
        )
        .await;
        let mut ports = citus::cluster().worker_ports();
        ports.sort();
        let per_worker = (citus::cluster().settings().shard_count as usize / ports.len()) * 9;
        let expected: Vec<_> = ports
            .iter()
            .map(|p| vec![Some(p.to_string()), Some(per_worker.to_string())])
            .collect();
        assert_eq!(
            spread, expected,
            "nine tenant tables, their shards on both workers"
        );
    }
}

mod row_security {
    use harness::{TestDb, scalar, text_rows};
    use migration::tenancy;

    /// Citus copies each policy and `ENABLE ROW LEVEL SECURITY` to every shard placement, so
    /// a statement a worker runs on its shard is confined as it is on the coordinator.
    #[tokio::test]
    async fn every_shard_of_a_guarded_table_has_row_level_security_and_every_policy() {
        let db = TestDb::migrated().await;
        for table in tenancy::guarded().map(|t| t.table) {
            let policies = scalar(
                db.conn(),
                &format!("SELECT count(*) FROM pg_policy WHERE polrelid = '{table}'::regclass"),
            )
            .await;
            assert!(policies >= 2, "{table} has {policies} policies");
            let shards = text_rows(
                db.conn(),
                &format!(
                    "SELECT shardid::text, success::text, result FROM run_command_on_shards('{table}',
                         $$SELECT c.relrowsecurity::text || ' ' || count(p.oid)::text
                           FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid
                           WHERE c.oid = '%s'::regclass GROUP BY c.relrowsecurity$$)"
                ),
            )
            .await;
            assert!(!shards.is_empty(), "{table} has no shard");
            for shard in shards {
                assert_eq!(
                    (shard[1].as_deref(), shard[2].clone()),
                    (Some("true"), Some(format!("true {policies}"))),
                    "shard {:?} of {table}",
                    shard[0]
                );
            }
        }
    }
}
