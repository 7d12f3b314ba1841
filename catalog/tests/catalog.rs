//! The catalog read from a migrated database agrees with PostgreSQL's own views of it.

use catalog::{Catalog, OnDelete};
use harness::{TestDb, scalar};

#[tokio::test]
async fn every_table_key_and_foreign_key_is_read() {
    let db = TestDb::migrated().await;
    let catalog = Catalog::load(db.conn()).await.unwrap();
    let tables = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    )
    .await;
    assert_eq!(catalog.tables.len() as i64, tables);
    let fks = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_constraint WHERE contype = 'f'",
    )
    .await;
    let read: usize = catalog.tables.iter().map(|t| t.foreign_keys.len()).sum();
    assert_eq!(read as i64, fks);
    assert!(catalog.tables.iter().all(|t| !t.primary_key.is_empty()));

    let members = catalog.table("members").unwrap();
    assert_eq!(members.primary_key, ["organization_id", "id"]);
    let fk = members.foreign_key_of("organization_id").unwrap();
    assert_eq!(fk.references, "organizations");
    assert_eq!(fk.referenced_columns, ["id"]);
    assert_eq!(fk.on_delete, OnDelete::Cascade);
    assert!(members.is_unique(&["organization_id".into(), "user_id".into()]));
    assert!(!members.is_unique(&["user_id".into()]));

    let sessions = catalog.table("sessions").unwrap();
    assert!(sessions.is_unique(&["token".into()]));
    assert_eq!(
        sessions
            .foreign_key_of("active_organization_id")
            .unwrap()
            .on_delete,
        OnDelete::SetNull
    );
    let column = sessions.column("expires_at").unwrap();
    assert_eq!(
        (
            column.sql_type.as_str(),
            column.type_name.as_str(),
            column.nullable
        ),
        ("timestamp with time zone", "timestamptz", false)
    );
    let scopes = catalog
        .table("slack_connections")
        .unwrap()
        .column("scopes")
        .unwrap();
    assert!(scopes.is_array);
    assert_eq!(scopes.type_name, "text");

    // Indexes: the created_at index leads; the partial pending index and lower(email) do not.
    let events = catalog.table("slack_events").unwrap();
    assert!(events.index_leading_columns.contains("created_at"));
    let invitations = catalog.table("invitations").unwrap();
    assert!(!invitations.is_unique(&["organization_id".into(), "email".into()]));
}

#[tokio::test]
async fn the_erd_has_every_table_but_the_migrators_and_every_foreign_key() {
    let db = TestDb::migrated().await;
    let catalog = Catalog::load(db.conn()).await.unwrap();
    let erd = catalog::mermaid(&catalog);
    assert!(erd.starts_with("erDiagram\n"));
    for table in &catalog.tables {
        let block = format!("    {} {{\n", table.name);
        assert_eq!(
            erd.contains(&block),
            table.name != catalog::MIGRATIONS_TABLE,
            "{}",
            table.name
        );
        for fk in &table.foreign_keys {
            let label = format!(" {} : \"{}\"\n", table.name, fk.columns.join(", "));
            assert!(erd.contains(&label), "{} missing:\n{erd}", fk.name);
        }
    }
    assert!(erd.contains("    organizations ||--o{ members : \"organization_id\"\n"));
    assert!(erd.contains("    organizations |o--o{ sessions : \"active_organization_id\"\n"));
    assert!(erd.contains("        uuid id PK\n"));
    assert!(erd.contains("        text[] scopes\n"));
    assert!(erd.contains("        varchar(128) model\n"));
}
