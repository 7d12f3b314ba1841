//! `cargo xtask contract`: `docs/schema.md` must begin with the shared schema contract
//! (`../shared/SCHEMA.md`, beside the checkout), unchanged. Only the monorepo has the contract, so
//! this is a step of `.ci/run`, not a test: `cargo test` in a user's clone reads nothing outside it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The contract beside the checkout, where CI and the monorepo keep it.
pub fn default_shared_path(workspace: &Path) -> PathBuf {
    workspace.join("../shared/SCHEMA.md")
}

/// Compares the two files; the error says which is missing or what to do.
pub fn check_files(ours: &Path, shared: &Path) -> Result<()> {
    let shared_text = std::fs::read_to_string(shared).with_context(|| {
        format!(
            "the shared schema contract {} is missing (it is kept beside the checkout, as CI has it)",
            shared.display()
        )
    })?;
    let ours_text =
        std::fs::read_to_string(ours).with_context(|| format!("reading {}", ours.display()))?;
    check(&ours_text, &shared_text).with_context(|| {
        format!(
            "{} must begin with the content of {}",
            ours.display(),
            shared.display()
        )
    })
}

/// `ours` begins with `shared` (trailing white space of the contract aside); the error names the
/// first line where they part.
pub fn check(ours: &str, shared: &str) -> Result<()> {
    let shared = shared.trim_end();
    let rest = ours.strip_prefix(shared);
    if rest.is_some_and(|rest| rest.is_empty() || rest.starts_with('\n')) {
        return Ok(());
    }
    let (line, (theirs, mine)) = shared
        .lines()
        .zip(ours.lines().chain(std::iter::repeat("")))
        .enumerate()
        .find(|(_, (theirs, mine))| theirs != mine)
        .unwrap_or((shared.lines().count(), ("", "")));
    bail!(
        "they differ at line {}: the contract has {theirs:?}, docs/schema.md has {mine:?}; copy the contract's text unchanged",
        line + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_followed_by_more_passes() {
        check("# A\nrule\n\n---\nours\n", "# A\nrule\n\n").unwrap();
        check("# A\nrule", "# A\nrule").unwrap();
    }

    #[test]
    fn a_changed_line_is_named() {
        let err = check("# A\nrule changed\nmore\n", "# A\nrule\n").unwrap_err();
        assert!(
            check("# A\nrules\n", "# A\nrule\n").is_err(),
            "a longer last line"
        );
        let message = err.to_string();
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("\"rule changed\""), "{message}");
    }

    #[test]
    fn the_contract_is_looked_for_beside_the_checkout() {
        assert_eq!(
            default_shared_path(Path::new("/w/main")),
            Path::new("/w/main/../shared/SCHEMA.md")
        );
    }

    #[test]
    fn a_missing_contract_fails_naming_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("schema.md");
        std::fs::write(&ours, "# A\n").unwrap();
        let shared = dir.path().join("shared/SCHEMA.md");
        let err = check_files(&ours, &shared).unwrap_err();
        assert!(
            format!("{err:#}").contains("shared/SCHEMA.md is missing"),
            "{err:#}"
        );
        std::fs::create_dir(dir.path().join("shared")).unwrap();
        std::fs::write(&shared, "# A\n").unwrap();
        check_files(&ours, &shared).unwrap();
    }
}
