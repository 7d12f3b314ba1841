//! The catalog drawn as a Mermaid `erDiagram`, and the Markdown page that holds it.

use std::fmt::Write;

use crate::{Catalog, Column, ForeignKey, MIGRATIONS_TABLE, Table};

/// A Mermaid `erDiagram` of every table but the migrator's: columns with their types and
/// PK/FK/UK markers, and one relationship per foreign key, labelled with its columns.
pub fn mermaid(catalog: &Catalog) -> String {
    let tables: Vec<&Table> = catalog
        .tables
        .iter()
        .filter(|t| t.name != MIGRATIONS_TABLE)
        .collect();
    let mut out = String::from("erDiagram\n");
    for table in &tables {
        writeln!(out, "    {} {{", table.name).unwrap();
        for column in &table.columns {
            let keys = keys(table, column);
            write!(out, "        {} {}", mermaid_type(column), column.name).unwrap();
            if !keys.is_empty() {
                write!(out, " {}", keys.join(", ")).unwrap();
            }
            if column.nullable {
                out.push_str(" \"nullable\"");
            }
            out.push('\n');
        }
        out.push_str("    }\n");
    }
    for table in &tables {
        for fk in &table.foreign_keys {
            writeln!(
                out,
                "    {} {}--{} {} : \"{}\"",
                fk.references,
                parent_side(table, fk),
                child_side(table, fk),
                table.name,
                fk.columns.join(", ")
            )
            .unwrap();
        }
    }
    out
}

/// `docs/erd.md`: the diagram in a fenced block GitHub renders, under a header saying where it
/// comes from.
pub fn erd_markdown(catalog: &Catalog) -> String {
    format!(
        "# Entity-relationship diagram\n\n\
         Generated from the migrated database's catalog by `cargo xtask entities`; CI runs\n\
         `cargo xtask entities --check`, which fails when this file differs from the migrations.\n\
         Do not edit by hand. The studio (`cargo run -p studio`) draws the same diagram from the\n\
         database it is pointed at, on its ERD page.\n\n\
         Relationships read parent to child: `||` exactly one parent (the foreign key is NOT NULL),\n\
         `|o` zero or one (nullable), `o{{` any number of children, `o|` at most one (the foreign\n\
         key is unique). Labels are the referencing columns.\n\n\
         ```mermaid\n{}```\n",
        mermaid(catalog)
    )
}

fn keys(table: &Table, column: &Column) -> Vec<&'static str> {
    let one = std::slice::from_ref(&column.name);
    let mut keys = Vec::new();
    if table.primary_key.contains(&column.name) {
        keys.push("PK");
    }
    if table
        .foreign_keys
        .iter()
        .any(|fk| fk.columns.contains(&column.name))
    {
        keys.push("FK");
    }
    if !table.primary_key.contains(&column.name) && table.is_unique(one) {
        keys.push("UK");
    }
    keys
}

/// Mermaid attribute types are single words: `timestamp with time zone` becomes
/// `timestamptz`, `character varying(128)` becomes `varchar(128)`, arrays end in `[]`.
fn mermaid_type(column: &Column) -> String {
    let base = match column.type_name.as_str() {
        "int2" => "smallint".to_owned(),
        "int4" => "integer".to_owned(),
        "int8" => "bigint".to_owned(),
        "bool" => "boolean".to_owned(),
        "float4" => "real".to_owned(),
        "float8" => "double".to_owned(),
        name => {
            let modifier = column
                .sql_type
                .find('(')
                .map(|at| column.sql_type[at..].trim_end_matches("[]"))
                .filter(|m| m.chars().all(|c| c.is_ascii_digit() || "(),".contains(c)));
            format!("{name}{}", modifier.unwrap_or(""))
        }
    };
    if column.is_array {
        format!("{base}[]")
    } else {
        base
    }
}

fn parent_side(table: &Table, fk: &ForeignKey) -> &'static str {
    let optional = fk
        .columns
        .iter()
        .any(|c| table.column(c).is_none_or(|col| col.nullable));
    if optional { "|o" } else { "||" }
}

fn child_side(table: &Table, fk: &ForeignKey) -> &'static str {
    if table.is_unique(&fk.columns) {
        "o|"
    } else {
        "o{"
    }
}
