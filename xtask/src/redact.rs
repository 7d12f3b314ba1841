//! The step of `cargo xtask entities` that keeps secrets out of the generated models, so it is
//! redone by every regeneration and verified by `--check`. sea-orm-cli derives `Serialize` and
//! `Debug` for every `Model`; for a model with a secret column (by `db_connect::secrets`' rule)
//! or a JSON column this step
//!
//! - marks each secret field `#[serde(skip_serializing)]`, so no JSON carries it;
//! - replaces the derived `Debug` with one written beside the model that prints `****` for a
//!   secret field (`None` stays `None`; a verification's identifier keeps what precedes its
//!   first `:`) and each JSON field with its secret keys redacted (`entity::redact`).
//!
//! It reads the generator's output line by line and refuses, naming the file, any shape it
//! does not know, so a sea-orm-cli change cannot make it skip a model silently.

use anyhow::{Context, Result, bail, ensure};
use db_connect::secrets::{SecretColumn, secret_column};

/// One field of a generated `Model`.
struct Field {
    /// The Rust name, e.g. `token` or `r#type`.
    name: String,
    ty: String,
    /// The index of its `pub name: Type,` line.
    line: usize,
    secret: Option<SecretColumn>,
}

/// `source` (one generated entity file) with its `Model` made secret-safe; unchanged when the
/// model has no secret and no JSON column.
pub fn redact_model(file: &str, source: &str) -> Result<String> {
    let lines: Vec<&str> = source.lines().collect();
    let table = lines
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("#[sea_orm(table_name = \"")?
                .strip_suffix("\")]")
        })
        .with_context(|| format!("{file}: no `#[sea_orm(table_name = ...)]`"))?;
    let open = lines
        .iter()
        .position(|l| *l == "pub struct Model {")
        .with_context(|| format!("{file}: no `pub struct Model {{`"))?;
    let close = open
        + lines[open..]
            .iter()
            .position(|l| *l == "}")
            .with_context(|| format!("{file}: `struct Model` does not end"))?;
    let fields = fields(file, table, &lines[..close], open)?;
    let needs_debug = fields.iter().any(|f| f.secret.is_some() || is_json(&f.ty));
    if !needs_debug {
        return Ok(source.to_owned());
    }
    let derive = (0..open)
        .rev()
        .find(|&i| lines[i].starts_with("#[derive("))
        .with_context(|| format!("{file}: `struct Model` has no derive"))?;
    ensure!(
        lines[derive].contains("Debug, "),
        "{file}: the derive of `Model` has no `Debug`: {}",
        lines[derive]
    );
    let mut out = Vec::with_capacity(lines.len() + fields.len() + 8);
    for (i, line) in lines.iter().enumerate() {
        if i == derive {
            out.push(line.replacen("Debug, ", "", 1));
            continue;
        }
        if fields.iter().any(|f| f.secret.is_some() && f.line == i) {
            out.push("    #[serde(skip_serializing)]".to_owned());
        }
        out.push((*line).to_owned());
        if i == close {
            out.push(String::new());
            out.extend(debug_impl(file, &fields)?);
        }
    }
    Ok(out.join("\n") + "\n")
}

fn fields(file: &str, table: &str, lines: &[&str], open: usize) -> Result<Vec<Field>> {
    let mut fields = Vec::new();
    let mut attributes = String::new();
    for (i, line) in lines.iter().enumerate().skip(open + 1) {
        let Some(declaration) = line.trim().strip_prefix("pub ") else {
            attributes.push_str(line);
            continue;
        };
        let (name, ty) = declaration
            .strip_suffix(',')
            .and_then(|d| d.split_once(": "))
            .with_context(|| format!("{file}: cannot read the field `{line}`"))?;
        // sea-orm-cli names a field after its column, unless the column needs another name.
        let column = match attributes.split_once("column_name = \"") {
            Some((_, rest)) => rest.split('"').next().unwrap_or_default().to_owned(),
            None => name.trim_start_matches("r#").to_owned(),
        };
        fields.push(Field {
            name: name.to_owned(),
            ty: ty.to_owned(),
            line: i,
            secret: secret_column(table, &column),
        });
        attributes.clear();
    }
    ensure!(!fields.is_empty(), "{file}: `struct Model` has no fields");
    Ok(fields)
}

fn is_json(ty: &str) -> bool {
    ty.contains("Json")
}

/// `impl Debug for Model` printing secrets masked and JSON redacted.
fn debug_impl(file: &str, fields: &[Field]) -> Result<Vec<String>> {
    let mut out = vec![
        "/// Written by `cargo xtask entities`: secret columns print as `****` (a verification's"
            .to_owned(),
        "/// identifier up to its first `:`), JSON with its secret keys redacted (`db_connect::secrets`)."
            .to_owned(),
        "impl std::fmt::Debug for Model {".to_owned(),
        "    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {".to_owned(),
        "        f.debug_struct(\"Model\")".to_owned(),
    ];
    for field in fields {
        let optional = field.ty.starts_with("Option<");
        let name = &field.name;
        let value = match (field.secret, is_json(&field.ty), optional) {
            (Some(SecretColumn::PrefixShown), _, false) if field.ty == "String" => {
                format!("&crate::redact::MaskedAfterPrefix(&self.{name})")
            }
            (Some(_), _, false) => "&crate::redact::Masked".to_owned(),
            (Some(_), _, true) => format!("&self.{name}.as_ref().map(|_| crate::redact::Masked)"),
            (None, true, false) if field.ty == "Json" => {
                format!("&crate::redact::Scrubbed(&self.{name})")
            }
            (None, true, true) if field.ty == "Option<Json>" => {
                format!("&self.{name}.as_ref().map(crate::redact::Scrubbed)")
            }
            (None, true, _) => bail!(
                "{file}: the JSON field `{name}: {}` has a type this step does not know how to redact",
                field.ty
            ),
            (None, false, _) => format!("&self.{name}"),
        };
        out.push(format!(
            "            .field(\"{}\", {value})",
            field.name.trim_start_matches("r#")
        ));
    }
    out.extend([
        "            .finish()".to_owned(),
        "    }".to_owned(),
        "}".to_owned(),
    ]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::redact_model;

    const SESSIONS: &str = r#"//! `SeaORM` Entity, @generated by sea-orm-codegen 2.0.4

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "sessions")]
#[serde(rename_all = "camelCase")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_type = "Text", unique)]
    pub token: String,
    #[sea_orm(column_type = "Text", column_name = "type")]
    pub r#type: String,
    #[sea_orm(column_type = "Text", nullable, column_name = "api_key")]
    pub key: Option<String>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub data: Option<Json>,
}

impl ActiveModelBehavior for ActiveModel {}
"#;

    #[test]
    fn secret_fields_skip_serialising_and_debug_masks_them_and_redacts_json() {
        let out = redact_model("sessions.rs", SESSIONS).unwrap();
        assert!(
            out.contains("#[derive(Clone, PartialEq, Eq, DeriveEntityModel"),
            "{out}"
        );
        assert!(
            out.contains("unique)]\n    #[serde(skip_serializing)]\n    pub token: String,"),
            "{out}"
        );
        assert!(
            out.contains("#[serde(skip_serializing)]\n    pub key: Option<String>,"),
            "a column renamed to a secret name is found by its column name: {out}"
        );
        assert_eq!(out.matches("skip_serializing").count(), 2, "{out}");
        for field in [
            r#".field("id", &self.id)"#,
            r#".field("token", &crate::redact::Masked)"#,
            r#".field("type", &self.r#type)"#,
            r#".field("key", &self.key.as_ref().map(|_| crate::redact::Masked))"#,
            r#".field("data", &self.data.as_ref().map(crate::redact::Scrubbed))"#,
        ] {
            assert!(out.contains(field), "{field} in {out}");
        }
        assert!(out.ends_with("impl ActiveModelBehavior for ActiveModel {}\n"));
    }

    #[test]
    fn a_model_without_secrets_or_json_is_left_alone() {
        let plain = SESSIONS
            .replace("    #[sea_orm(column_type = \"Text\", unique)]\n    pub token: String,\n", "")
            .replace(
                "    #[sea_orm(column_type = \"Text\", nullable, column_name = \"api_key\")]\n    pub key: Option<String>,\n",
                "",
            )
            .replace(
                "    #[sea_orm(column_type = \"JsonBinary\", nullable)]\n    pub data: Option<Json>,\n",
                "",
            );
        assert_eq!(redact_model("plain.rs", &plain).unwrap(), plain);
    }

    #[test]
    fn an_unknown_shape_is_refused_by_name() {
        let err = redact_model(
            "odd.rs",
            &SESSIONS.replace("pub struct Model {", "pub struct Row {"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("odd.rs: no `pub struct Model {`"),
            "{err}"
        );
        let err =
            redact_model("odd.rs", &SESSIONS.replace("Option<Json>", "Vec<Json>")).unwrap_err();
        assert!(err.to_string().contains("`data: Vec<Json>`"), "{err}");
    }
}
