//! The live schema as PostgreSQL's catalog describes it: tables, columns, keys, foreign keys and
//! the indexes a browser may sort by. The studio browses with it and `cargo xtask entities`
//! draws `docs/erd.md` from it, so both follow the migrated database rather than a copy.

mod erd;

use std::collections::BTreeSet;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use serde::Deserialize;

pub use erd::{erd_markdown, mermaid};

/// The table the migrator keeps its bookkeeping in: not part of the application's schema.
pub const MIGRATIONS_TABLE: &str = "seaql_migrations";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading the schema catalog failed: {0}")]
    Query(#[from] DbErr),
    #[error("the schema catalog answered in an unexpected shape: {0}")]
    Shape(#[from] serde_json::Error),
}

/// Every ordinary table of the connection's current schema, by name.
#[derive(Debug, Clone, Deserialize)]
pub struct Catalog {
    pub tables: Vec<Table>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Column sets of full (not partial, not expression) unique indexes, the primary key included.
    pub unique_keys: Vec<Vec<String>>,
    /// Columns that lead a full btree index, so ordering by them reads an index.
    pub index_leading_columns: BTreeSet<String>,
    /// The planner's estimate (`pg_class.reltuples`); -1 before the table was ever analyzed.
    pub row_estimate: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    /// As `format_type` spells it, e.g. `character varying(128)`; valid in a cast.
    pub sql_type: String,
    /// The type's (or an array's element type's) short name, e.g. `varchar`, `timestamptz`.
    pub type_name: String,
    pub is_array: bool,
    pub nullable: bool,
    pub has_default: bool,
    /// Generated or identity: never written by hand.
    pub generated: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub references: String,
    pub referenced_columns: Vec<String>,
    pub on_delete: OnDelete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OnDelete {
    #[serde(rename = "a")]
    NoAction,
    #[serde(rename = "r")]
    Restrict,
    #[serde(rename = "c")]
    Cascade,
    #[serde(rename = "n")]
    SetNull,
    #[serde(rename = "d")]
    SetDefault,
}

impl OnDelete {
    pub fn as_sql(self) -> &'static str {
        match self {
            OnDelete::NoAction => "NO ACTION",
            OnDelete::Restrict => "RESTRICT",
            OnDelete::Cascade => "CASCADE",
            OnDelete::SetNull => "SET NULL",
            OnDelete::SetDefault => "SET DEFAULT",
        }
    }
}

impl Catalog {
    /// Reads the catalog in one query.
    pub async fn load(db: &impl ConnectionTrait) -> Result<Self, CatalogError> {
        let row = db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, CATALOG_SQL))
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the catalog query returned no row".into()))?;
        let json: String = row.try_get("", "catalog")?;
        Ok(Catalog {
            tables: serde_json::from_str(&json)?,
        })
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The foreign keys of other tables (or of this one) that point at `table`.
    pub fn referencing<'a>(
        &'a self,
        table: &'a str,
    ) -> impl Iterator<Item = (&'a Table, &'a ForeignKey)> + 'a {
        self.tables.iter().flat_map(move |t| {
            t.foreign_keys
                .iter()
                .filter(move |fk| fk.references == table)
                .map(move |fk| (t, fk))
        })
    }
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn is_unique(&self, columns: &[String]) -> bool {
        self.unique_keys
            .iter()
            .any(|key| key.len() == columns.len() && key.iter().all(|c| columns.contains(c)))
    }

    /// The foreign key made of exactly this one column, if any.
    pub fn foreign_key_of(&self, column: &str) -> Option<&ForeignKey> {
        self.foreign_keys
            .iter()
            .find(|fk| fk.columns.len() == 1 && fk.columns[0] == column)
    }
}

const CATALOG_SQL: &str = r#"
WITH tables AS (
    SELECT c.oid, c.relname, c.reltuples
    FROM pg_class c
    WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
      AND c.relkind IN ('r', 'p')
      AND NOT c.relispartition
)
SELECT COALESCE(json_agg(json_build_object(
    'name', t.relname,
    'row_estimate', t.reltuples::float8,
    'columns', (
        SELECT COALESCE(json_agg(json_build_object(
            'name', a.attname,
            'sql_type', format_type(a.atttypid, a.atttypmod),
            'type_name', COALESCE(elem.typname, ty.typname),
            'is_array', ty.typcategory = 'A',
            'nullable', NOT a.attnotnull,
            'has_default', a.atthasdef,
            'generated', a.attgenerated <> '' OR a.attidentity <> ''
        ) ORDER BY a.attnum), '[]')
        FROM pg_attribute a
        JOIN pg_type ty ON ty.oid = a.atttypid
        LEFT JOIN pg_type elem ON ty.typcategory = 'A' AND elem.oid = ty.typelem
        WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
    ),
    'primary_key', (
        SELECT COALESCE(json_agg(a.attname ORDER BY k.ord), '[]')
        FROM pg_constraint p
        CROSS JOIN LATERAL unnest(p.conkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
        WHERE p.conrelid = t.oid AND p.contype = 'p'
    ),
    'foreign_keys', (
        SELECT COALESCE(json_agg(json_build_object(
            'name', f.conname,
            'columns', (
                SELECT json_agg(a.attname ORDER BY k.ord)
                FROM unnest(f.conkey) WITH ORDINALITY AS k(attnum, ord)
                JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = k.attnum
            ),
            'references', r.relname,
            'referenced_columns', (
                SELECT json_agg(a.attname ORDER BY k.ord)
                FROM unnest(f.confkey) WITH ORDINALITY AS k(attnum, ord)
                JOIN pg_attribute a ON a.attrelid = f.confrelid AND a.attnum = k.attnum
            ),
            'on_delete', f.confdeltype
        ) ORDER BY f.conname), '[]')
        FROM pg_constraint f
        JOIN pg_class r ON r.oid = f.confrelid
        WHERE f.conrelid = t.oid AND f.contype = 'f'
    ),
    'unique_keys', (
        SELECT COALESCE(json_agg((
            SELECT json_agg(a.attname ORDER BY k.ord)
            FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
        ) ORDER BY i.indexrelid::regclass::text), '[]')
        FROM pg_index i
        WHERE i.indrelid = t.oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
    ),
    'index_leading_columns', (
        SELECT COALESCE(json_agg(DISTINCT a.attname), '[]')
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = t.oid AND i.indpred IS NULL
    )
) ORDER BY t.relname), '[]')::text AS catalog
FROM tables t
"#;
