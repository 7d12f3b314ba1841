//! The reviewed list of what the lint lets through (`migration/lint/exceptions.toml`): rules off
//! for every migration, and single exceptions for one migration and one rule, each with a reason.

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::LintError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exceptions {
    /// Rules off everywhere, by squawk rule name.
    #[serde(default)]
    pub rules: BTreeMap<String, Reason>,
    /// One rule let through in one migration.
    #[serde(default, rename = "exception")]
    pub exceptions: Vec<Exception>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exception {
    pub migration: String,
    pub rule: String,
    pub reason: String,
}

impl Exceptions {
    pub fn load(path: &Path) -> Result<Self, LintError> {
        let text = std::fs::read_to_string(path).map_err(|e| LintError::Exceptions {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| LintError::Exceptions {
            path: path.to_owned(),
            reason,
        })
    }

    /// Every entry needs a reason: an exception nobody can explain is not reviewed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let exceptions: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        let missing = exceptions
            .rules
            .iter()
            .filter(|(_, r)| r.reason.trim().is_empty())
            .map(|(rule, _)| format!("rules.{rule}"))
            .chain(
                exceptions
                    .exceptions
                    .iter()
                    .filter(|e| e.reason.trim().is_empty())
                    .map(|e| format!("{} / {}", e.migration, e.rule)),
            )
            .collect::<Vec<_>>();
        if !missing.is_empty() {
            return Err(format!("no reason given for {}", missing.join(", ")));
        }
        Ok(exceptions)
    }

    pub(crate) fn find(&self, migration: &str, rule: &str) -> Option<&Exception> {
        self.exceptions
            .iter()
            .find(|e| e.migration == migration && e.rule == rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_needs_a_reason() {
        let ok = Exceptions::parse(
            "[rules.prefer-text-field]\nreason = \"schema contract\"\n\n[[exception]]\nmigration = \"m1\"\nrule = \"r\"\nreason = \"why\"\n",
        )
        .unwrap();
        assert_eq!(ok.rules.len(), 1);
        assert!(ok.find("m1", "r").is_some());
        let err =
            Exceptions::parse("[[exception]]\nmigration = \"m1\"\nrule = \"r\"\nreason = \" \"\n")
                .unwrap_err();
        assert!(err.contains("m1 / r"), "{err}");
        assert!(Exceptions::parse("[[exception]]\nmigration = \"m1\"\nrule = \"r\"\n").is_err());
    }
}
