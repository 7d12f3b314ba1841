//! The same seed and scale write the same rows, byte for byte, in every table; another seed
//! writes other rows; the counts are the scale's.

mod common;

use common::{dump, small_seed};
use harness::{scalar, text_rows};
use seed::{APPLICATION_TABLES, DEMO_EMAIL, Scale};

#[tokio::test]
async fn the_same_seed_twice_gives_identical_rows_in_every_table() {
    let ((first, _), (second, _)) = tokio::join!(small_seed(7), small_seed(7));
    let (a, b) = (dump(&first).await, dump(&second).await);
    assert!(
        a.len() >= APPLICATION_TABLES.len(),
        "tables: {:?}",
        a.keys()
    );
    for (table, rows) in &a {
        assert!(!rows.is_empty(), "{table} was not seeded");
        assert!(
            *rows == b[table],
            "{table} differs between two runs of seed 7:\n{}",
            first_difference(rows, &b[table])
        );
    }
}

fn first_difference(a: &str, b: &str) -> String {
    a.lines()
        .zip(b.lines())
        .find(|(x, y)| x != y)
        .map_or("(one has more rows)".into(), |(x, y)| format!("{x}\n{y}"))
}

#[tokio::test]
async fn two_seeds_give_different_rows_in_every_table() {
    let ((one, _), (two, _)) = tokio::join!(small_seed(1), small_seed(2));
    let (a, b) = (dump(&one).await, dump(&two).await);
    for (table, rows) in &a {
        assert_ne!(*rows, b[table], "{table} is the same for seeds 1 and 2");
    }
}

#[tokio::test]
async fn the_counts_are_the_scales_and_the_landmarks_point_at_the_right_rows() {
    let (db, seeded) = small_seed(3).await;
    let sizes = Scale::Small.sizes();
    for (table, expected) in [
        ("users", sizes.users),
        ("organizations", sizes.organizations),
        ("agent_runs", sizes.agent_runs),
        ("tool_calls", sizes.tool_calls),
    ] {
        assert_eq!(seeded.rows_in(table), expected, "{table}");
        let counted = scalar(db.conn(), &format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(counted as u64, expected, "{table}");
    }
    // A scale's events are deliveries: those no route claims are kept in `unrouted_events`.
    let mut unrouted = 0;
    for (table, provider, expected) in [
        ("slack_events", "slack", sizes.slack_events),
        ("linear_events", "linear", sizes.linear_events),
    ] {
        let apart = scalar(
            db.conn(),
            &format!("SELECT count(*) FROM unrouted_events WHERE provider = '{provider}'"),
        )
        .await as u64;
        assert!(
            apart > 0 && apart < expected / 20,
            "{provider}: {apart} unrouted"
        );
        let routed = scalar(db.conn(), &format!("SELECT count(*) FROM {table}")).await as u64;
        assert_eq!(routed + apart, expected, "{table}");
        assert_eq!(seeded.rows_in(table), routed, "{table}");
        unrouted += apart;
    }
    assert_eq!(seeded.rows_in("unrouted_events"), unrouted);
    assert_eq!(
        seeded.rows.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        APPLICATION_TABLES
    );

    let demo = text_rows(
        db.conn(),
        &format!(
            "SELECT u.id, m.role, o.slug FROM users u
             JOIN members m ON m.user_id = u.id JOIN organizations o ON o.id = m.organization_id
             WHERE u.email = '{DEMO_EMAIL}' AND o.id = '{}'",
            seeded.demo_organization_id
        ),
    )
    .await;
    assert_eq!(
        demo,
        [[
            Some(seeded.demo_user_id.clone()),
            Some("owner".into()),
            Some("acme".into())
        ]]
    );
    let busiest = text_rows(
        db.conn(),
        "SELECT organization_id FROM agent_runs GROUP BY organization_id
         ORDER BY count(*) DESC, min(organization_id) LIMIT 1",
    )
    .await;
    let most = scalar(
        db.conn(),
        "SELECT max(n) FROM (SELECT count(*) AS n FROM agent_runs GROUP BY organization_id) c",
    )
    .await;
    let of_landmark = scalar(
        db.conn(),
        &format!(
            "SELECT count(*) FROM agent_runs WHERE organization_id = '{}'",
            seeded.busiest_organization_id
        ),
    )
    .await;
    assert_eq!(of_landmark, most, "busiest by the query: {busiest:?}");
}
