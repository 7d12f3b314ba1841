//! Every value of every enumeration, both states of every nullable and boolean column, and only
//! ciphertext in token columns, at the smallest named scale. The columns and values are read
//! from `pg_catalog`, so a column or value added by a later migration is checked without a
//! change here.

mod common;

use common::{quote, small_seed};
use harness::{TestDb, scalar, text_rows};
use seed::APPLICATION_TABLES;

/// `(table, column, value)` for every value a single-column CHECK (`col IN (...)`) allows.
async fn enumeration_values(db: &TestDb) -> Vec<(String, String, String)> {
    text_rows(
        db.conn(),
        "SELECT c.conrelid::regclass::text, a.attname::text, m[1]
         FROM pg_constraint c
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         CROSS JOIN LATERAL regexp_matches(pg_get_constraintdef(c.oid), '''([^'']*)''', 'g') AS m
         WHERE c.contype = 'c' AND cardinality(c.conkey) = 1
           AND c.connamespace = current_schema()::regnamespace
         ORDER BY 1, 2, 3",
    )
    .await
    .into_iter()
    .map(|row| {
        let mut row = row.into_iter().map(|v| v.expect("not null"));
        (
            row.next().unwrap(),
            row.next().unwrap(),
            row.next().unwrap(),
        )
    })
    .collect()
}

/// `(table, column, is boolean)` for every nullable or boolean column of the seeded tables.
async fn two_state_columns(db: &TestDb) -> Vec<(String, String, bool)> {
    text_rows(
        db.conn(),
        "SELECT c.relname::text, a.attname::text, (a.atttypid = 'boolean'::regtype)::text
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
           AND a.attnum > 0 AND NOT a.attisdropped
           AND (NOT a.attnotnull OR a.atttypid = 'boolean'::regtype)
         ORDER BY 1, 2",
    )
    .await
    .into_iter()
    .filter(|row| APPLICATION_TABLES.contains(&row[0].as_deref().unwrap()))
    .map(|row| {
        (
            row[0].clone().unwrap(),
            row[1].clone().unwrap(),
            row[2].as_deref() == Some("true"),
        )
    })
    .collect()
}

async fn check_coverage(seed: u64) {
    let (db, _) = small_seed(seed).await;

    let values = enumeration_values(&db).await;
    let enumerations: std::collections::BTreeSet<_> = values
        .iter()
        .map(|(t, c, _)| (t.clone(), c.clone()))
        .collect();
    assert!(
        enumerations.len() >= 10,
        "the CHECK constraints were not read: {enumerations:?}"
    );
    let mut missing = Vec::new();
    for (table, column, value) in &values {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {}::text = '{}'",
            quote(table),
            quote(column),
            value.replace('\'', "''")
        );
        if scalar(db.conn(), &sql).await == 0 {
            missing.push(format!(
                "{table}.{column} = '{value}' (write it in {})",
                generator(table)
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "seed {seed} never writes: {missing:?}; the first rows of a table are chosen so \
         every value appears"
    );

    let columns = two_state_columns(&db).await;
    assert!(
        columns.len() > 40,
        "the nullable columns were not read: {columns:?}"
    );
    let mut one_state = Vec::new();
    for (table, column, boolean) in &columns {
        let (a, b) = if *boolean {
            ("IS TRUE", "IS FALSE")
        } else {
            ("IS NULL", "IS NOT NULL")
        };
        for state in [a, b] {
            let sql = format!(
                "SELECT count(*) FROM {} WHERE {} {state}",
                quote(table),
                quote(column)
            );
            if scalar(db.conn(), &sql).await == 0 {
                one_state.push(format!(
                    "{table}.{column} never {state} (fill it in {}: add the column to its \
                     Table's columns and write both states in its first rows)",
                    generator(table)
                ));
            }
        }
    }
    assert!(one_state.is_empty(), "seed {seed}: {one_state:?}");
}

fn generator(table: &str) -> &'static str {
    seed::generator_of(table).unwrap_or("seed/src/generate/ (no generator writes this table yet)")
}

#[tokio::test]
async fn every_enumeration_value_and_both_states_of_every_nullable_and_boolean_column_appear() {
    tokio::join!(check_coverage(1), check_coverage(2));
}

#[tokio::test]
async fn token_columns_hold_only_ciphertext() {
    let (db, _) = small_seed(1).await;
    // Every `*_encrypted` column of the schema, and Better Auth's OAuth token columns.
    let columns = text_rows(
        db.conn(),
        "SELECT c.relname::text, a.attname::text
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
           AND a.attnum > 0 AND NOT a.attisdropped
           AND (a.attname LIKE '%\\_encrypted'
                OR (c.relname = 'accounts' AND a.attname IN ('access_token', 'refresh_token', 'id_token'))
                OR (c.relname = 'two_factors' AND a.attname IN ('secret', 'backup_codes')))",
    )
    .await;
    assert!(columns.len() >= 8, "{columns:?}");
    for column in columns {
        let (table, column) = (column[0].clone().unwrap(), column[1].clone().unwrap());
        let sql = format!(
            "SELECT {c} FROM {t} WHERE {c} IS NOT NULL",
            c = quote(&column),
            t = quote(&table)
        );
        let values = text_rows(db.conn(), &sql).await;
        assert!(!values.is_empty(), "{table}.{column} has no value to check");
        for value in values {
            let value = value[0].clone().unwrap();
            let shaped = value.strip_prefix("v1:").is_some_and(|b64| {
                !b64.is_empty()
                    && b64
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
            });
            // Not shown: it is seed data, but the rule is never to print a token.
            assert!(
                shaped,
                "{table}.{column} holds a value not shaped like ciphertext"
            );
            assert!(
                service::EncryptedToken::from_ciphertext(value).is_ok(),
                "{table}.{column} holds a value the service refuses as plaintext-looking"
            );
        }
    }
}
