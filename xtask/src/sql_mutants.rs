//! `cargo xtask sql-mutants`: hand-made mutations of the SQL the helpers send, which
//! cargo-mutants cannot make (it leaves string literals alone). Each mutant breaks one clause of
//! one statement (a `SKIP LOCKED`, an `ORDER BY`, a guard in a `WHERE`, an `ON CONFLICT`); the
//! task applies it to the source, runs the test file that covers it, reports whether a test
//! failed (caught) or none did (missed), and restores the file.
//!
//! Files are changed in place, one at a time, and restored after each mutant; a copy of the
//! original is kept in `target/sql-mutants/backup/` until then, and restored by the next run if
//! this one was killed.

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// One mutation of one statement.
pub struct SqlMutant {
    /// Short name, for `--only`.
    pub name: &'static str,
    /// What the mutation breaks, in a few words.
    pub breaks: &'static str,
    /// The file, from the workspace root.
    pub file: &'static str,
    /// Text that occurs exactly once in `file`...
    pub from: &'static str,
    /// ...and what it becomes.
    pub to: &'static str,
    /// The cargo package and test target that cover it.
    pub package: &'static str,
    pub test: &'static str,
    /// The tests expected to fail (each test of the target runs; any failure catches it).
    pub caught_by: &'static [&'static str],
}

const EVENTS: &str = "service/src/events.rs";
const ORGS: &str = "service/src/organizations.rs";
const AUTH: &str = "service/src/auth.rs";
const AGENTS: &str = "service/src/agents.rs";
const TOOLS: &str = "service/src/tools.rs";
const INTEGRATIONS: &str = "service/src/integrations.rs";
const IT: &str = "harness";

/// Every mutant. When a statement is rewritten, its `from` stops matching and the run reports
/// the mutant as stale: update it to the new text.
pub const MUTANTS: &[SqlMutant] = &[
    SqlMutant {
        name: "claim-no-skip-locked",
        breaks: "claim waits for rows another worker holds",
        file: EVENTS,
        from: "LIMIT $1 FOR UPDATE SKIP LOCKED)",
        to: "LIMIT $1 FOR UPDATE)",
        package: IT,
        test: "service_events",
        caught_by: &["a_claim_rolled_back_by_a_crashing_worker_is_claimed_again"],
    },
    SqlMutant {
        name: "claim-no-order-by",
        breaks: "claim takes any due events, not the longest due",
        file: EVENTS,
        from: "ORDER BY due_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)",
        to: "LIMIT $1 FOR UPDATE SKIP LOCKED)",
        package: IT,
        test: "service_events",
        caught_by: &["workers_claim_each_event_exactly_once_oldest_first"],
    },
    SqlMutant {
        name: "claim-no-pending-guard",
        breaks: "claim takes events in any status",
        file: EVENTS,
        from: "SELECT id FROM {0} WHERE {QUEUED} AND",
        to: "SELECT id FROM {0} WHERE true AND",
        package: IT,
        test: "service_events",
        caught_by: &[
            "workers_claim_each_event_exactly_once_oldest_first",
            "failures_retry_until_the_limit_then_stay_failed",
        ],
    },
    SqlMutant {
        name: "claim-no-attempt-count",
        breaks: "claim does not count the attempt",
        file: EVENTS,
        from: "ELSE e.attempts + 1 END",
        to: "ELSE e.attempts END",
        package: IT,
        test: "service_events",
        caught_by: &["failures_retry_until_the_limit_then_stay_failed"],
    },
    SqlMutant {
        name: "claim-ignores-due-time",
        breaks: "a retry is claimed before its backoff ends, a lease before it runs out",
        file: EVENTS,
        from: "WHERE {QUEUED} AND due_at <= now()",
        to: "WHERE {QUEUED}",
        package: IT,
        test: "workers",
        caught_by: &["claims_honour_due_times_and_leases_and_fence_moves_of_lost_claims"],
    },
    SqlMutant {
        name: "ingest-no-on-conflict",
        breaks: "a retried delivery is an error, not a duplicate",
        file: EVENTS,
        from: "ON CONFLICT (event_id) DO NOTHING RETURNING event_id, id",
        to: "RETURNING event_id, id",
        package: IT,
        test: "service_events",
        caught_by: &[
            "one_delivery_is_stored_once_and_retries_are_reported_as_duplicates",
            "a_batch_skips_stored_deliveries_and_repeats_within_itself",
        ],
    },
    SqlMutant {
        name: "event-move-no-status-guard",
        breaks: "mark_* moves an event from any status",
        file: EVENTS,
        from: "WHERE id = $1 AND status IN ({from}) RETURNING {}",
        to: "WHERE id = $1 RETURNING {}",
        package: IT,
        test: "service_events",
        caught_by: &["status_moves_are_guarded"],
    },
    SqlMutant {
        name: "mark-failed-off-by-one",
        breaks: "an event gets one attempt more than the limit",
        file: EVENTS,
        from: "CASE WHEN attempts >= $3 THEN 'failed'",
        to: "CASE WHEN attempts > $3 THEN 'failed'",
        package: IT,
        test: "service_events",
        caught_by: &["failures_retry_until_the_limit_then_stay_failed"],
    },
    SqlMutant {
        name: "requeue-no-age-guard",
        breaks: "requeue_stuck takes events still being worked on",
        file: EVENTS,
        from: "WHERE status = 'processing' AND updated_at < now() - make_interval(secs => $1)",
        to: "WHERE status = 'processing' AND $1::float8 IS NOT NULL",
        package: IT,
        test: "service_events",
        caught_by: &["events_stuck_in_processing_are_requeued_after_a_worker_dies"],
    },
    SqlMutant {
        name: "list-order-by-id-only",
        breaks: "the listing is not newest first",
        file: EVENTS,
        from: "ORDER BY created_at DESC, id DESC LIMIT ${}",
        to: "ORDER BY id DESC LIMIT ${}",
        package: IT,
        test: "service_events",
        caught_by: &["listing_pages_through_everything_newest_first_with_filters"],
    },
    SqlMutant {
        name: "list-cursor-no-tie-break",
        breaks: "the next page skips events sharing the cursor's created_at",
        file: EVENTS,
        from: r#""(created_at, id) < (${}, ${n})""#,
        to: r#""created_at < ${} AND id <> ${n}""#,
        package: IT,
        test: "service_events",
        caught_by: &["listing_pages_through_everything_newest_first_with_filters"],
    },
    SqlMutant {
        name: "owners-not-locked",
        breaks: "concurrent demotions or removals can leave no owner",
        file: ORGS,
        from: r#"" FOR UPDATE)""#,
        to: r#"")""#,
        package: IT,
        test: "service_organizations",
        caught_by: &[
            "owners_demoting_themselves_all_at_once_leave_exactly_one_owner",
            "owners_leaving_all_at_once_leave_exactly_one_owner",
        ],
    },
    SqlMutant {
        name: "change-role-no-owner-guard",
        breaks: "the last owner can be demoted",
        file: ORGS,
        from: "m.user_id = $2 AND ($4 OR {ANOTHER_OWNER_REMAINS})",
        to: "m.user_id = $2 AND ($4 OR true)",
        package: IT,
        test: "service_organizations",
        caught_by: &["members_are_added_changed_and_removed_but_the_last_owner_stays"],
    },
    SqlMutant {
        name: "remove-member-no-owner-guard",
        breaks: "the last owner can be removed",
        file: ORGS,
        from: "m.user_id = $2 AND {ANOTHER_OWNER_REMAINS}",
        to: "m.user_id = $2",
        package: IT,
        test: "service_organizations",
        caught_by: &["members_are_added_changed_and_removed_but_the_last_owner_stays"],
    },
    SqlMutant {
        name: "accept-no-pending-guard",
        breaks: "an invitation can be accepted twice",
        file: ORGS,
        from: "WHERE i.id = $1 AND i.status = 'pending' AND i.expires_at > now()",
        to: "WHERE i.id = $1 AND i.expires_at > now()",
        package: IT,
        test: "service_organizations",
        caught_by: &[
            "accepting_makes_a_member_and_only_for_the_invited_email",
            "concurrent_accepts_make_one_member_and_typed_errors_for_the_rest",
        ],
    },
    SqlMutant {
        name: "accept-no-expiry-guard",
        breaks: "an expired invitation can be accepted",
        file: ORGS,
        from: "WHERE i.id = $1 AND i.status = 'pending' AND i.expires_at > now()",
        to: "WHERE i.id = $1 AND i.status = 'pending'",
        package: IT,
        test: "service_organizations",
        caught_by: &["an_expired_invitation_cannot_be_accepted"],
    },
    SqlMutant {
        name: "accept-no-email-guard",
        breaks: "anyone can accept an invitation sent to someone else",
        file: ORGS,
        from: "AND lower(i.email) = (SELECT lower(u.email) FROM users u WHERE u.id = $2)",
        to: "AND $2::text IS NOT NULL",
        package: IT,
        test: "service_organizations",
        caught_by: &["accepting_makes_a_member_and_only_for_the_invited_email"],
    },
    SqlMutant {
        name: "invite-sweeps-unexpired",
        breaks: "a new invitation cancels a pending, unexpired one",
        file: ORGS,
        from: "AND status = 'pending' AND expires_at <= now()",
        to: "AND status = 'pending'",
        package: IT,
        test: "service_organizations",
        caught_by: &["a_second_pending_invitation_for_the_same_email_is_a_conflict"],
    },
    SqlMutant {
        name: "close-invitation-no-guard",
        breaks: "a closed invitation can be rejected or canceled again",
        file: ORGS,
        from: "WHERE id = $1 AND status = 'pending' RETURNING {}",
        to: "WHERE id = $1 RETURNING {}",
        package: IT,
        test: "service_organizations",
        caught_by: &["invitations_are_rejected_canceled_and_listed_by_email"],
    },
    SqlMutant {
        name: "session-no-expiry-guard",
        breaks: "an expired session token still signs in",
        file: AUTH,
        from: "WHERE s.token = $1 AND s.expires_at > now()",
        to: "WHERE s.token = $1",
        package: IT,
        test: "service_auth",
        caught_by: &["a_valid_session_comes_with_its_user_and_expired_ones_do_not"],
    },
    SqlMutant {
        name: "list-sessions-no-expiry-guard",
        breaks: "expired sessions are listed",
        file: AUTH,
        from: "WHERE s.user_id = $1 AND s.expires_at > now()",
        to: "WHERE s.user_id = $1",
        package: IT,
        test: "service_auth",
        caught_by: &["sessions_are_listed_and_revoked"],
    },
    SqlMutant {
        name: "revoke-session-any-user",
        breaks: "a user can revoke another user's session",
        file: AUTH,
        from: "DELETE FROM sessions WHERE id = $1 AND user_id = $2",
        to: "DELETE FROM sessions WHERE id = $1 AND $2::text IS NOT NULL",
        package: IT,
        test: "service_auth",
        caught_by: &["sessions_are_listed_and_revoked"],
    },
    SqlMutant {
        name: "revoke-sessions-null-keep",
        breaks: "revoking all sessions (keep none) deletes nothing",
        file: AUTH,
        from: "id IS DISTINCT FROM $2",
        to: "id <> $2",
        package: IT,
        test: "service_auth",
        caught_by: &["sessions_are_listed_and_revoked"],
    },
    SqlMutant {
        name: "verification-no-expiry-guard",
        breaks: "an expired verification can be consumed",
        file: AUTH,
        from: "WHERE identifier = $1 AND value = $2 AND expires_at > now()",
        to: "WHERE identifier = $1 AND value = $2",
        package: IT,
        test: "service_auth",
        caught_by: &["a_verification_is_consumed_once_even_when_raced"],
    },
    SqlMutant {
        name: "delete-expired-sessions-too-many",
        breaks: "sessions valid for less than a day are deleted as expired",
        file: AUTH,
        from: "DELETE FROM sessions WHERE expires_at <= now()",
        to: "DELETE FROM sessions WHERE expires_at <= now() + interval '2 days'",
        package: IT,
        test: "service_auth",
        caught_by: &["expired_sessions_and_verifications_are_deleted_in_bulk"],
    },
    SqlMutant {
        name: "run-move-no-status-guard",
        breaks: "a run moves from any status",
        file: AGENTS,
        from: "WHERE id = $1 AND status IN ({from}) RETURNING {}",
        to: "WHERE id = $1 RETURNING {}",
        package: IT,
        test: "service_agents",
        caught_by: &["runs_fail_or_are_cancelled_from_the_allowed_states_only"],
    },
    SqlMutant {
        name: "append-tool-call-any-run",
        breaks: "tool calls are appended to runs that are not running",
        file: AGENTS,
        from: "WHERE id = $1 AND status = 'running'",
        to: "WHERE id = $1",
        package: IT,
        test: "service_agents",
        caught_by: &["tool_calls_get_gapless_sequences_even_when_appended_at_once"],
    },
    SqlMutant {
        name: "append-tool-call-sequence-from-1",
        breaks: "tool call sequences start at 1",
        file: AGENTS,
        from: "RETURNING next_tool_call_sequence - 1 AS sequence",
        to: "RETURNING next_tool_call_sequence AS sequence",
        package: IT,
        test: "service_agents",
        caught_by: &["tool_calls_get_gapless_sequences_even_when_appended_at_once"],
    },
    SqlMutant {
        name: "start-tool-call-no-guard",
        breaks: "a finished tool call can be started again",
        file: AGENTS,
        from: "WHERE id = $1 AND status = 'pending' RETURNING {}",
        to: "WHERE id = $1 RETURNING {}",
        package: IT,
        test: "service_agents",
        caught_by: &["a_tool_call_runs_and_finishes_with_output_or_error"],
    },
    SqlMutant {
        name: "finish-tool-call-no-guard",
        breaks: "a finished tool call can be finished again",
        file: AGENTS,
        from: "WHERE id = $1 AND status IN ('pending', 'running') RETURNING {}",
        to: "WHERE id = $1 RETURNING {}",
        package: IT,
        test: "service_agents",
        caught_by: &["a_tool_call_runs_and_finishes_with_output_or_error"],
    },
    SqlMutant {
        name: "list-runs-cursor-no-tie-break",
        breaks: "the next page of runs skips runs sharing the cursor's created_at",
        file: AGENTS,
        from: "AND (created_at, id) < ($2, $3)",
        to: "AND created_at < $2 AND id <> $3",
        package: IT,
        test: "service_agents",
        caught_by: &["runs_sharing_a_created_at_page_without_gaps_and_ranges_exclude_their_end"],
    },
    SqlMutant {
        name: "token-usage-closed-range",
        breaks: "token usage counts runs created at the end of the range",
        file: AGENTS,
        from: "created_at >= $2 AND created_at < $3",
        to: "created_at >= $2 AND created_at <= $3",
        package: IT,
        test: "service_agents",
        caught_by: &["runs_sharing_a_created_at_page_without_gaps_and_ranges_exclude_their_end"],
    },
    SqlMutant {
        name: "upsert-tools-re-enables",
        breaks: "re-seeding the catalog re-enables a tool an operator switched off",
        file: TOOLS,
        from: "tags = EXCLUDED.tags\n",
        to: "tags = EXCLUDED.tags, is_enabled = true\n",
        package: IT,
        test: "service_tools",
        caught_by: &["the_catalog_is_seeded_by_name_without_re_enabling_switched_off_tools"],
    },
    SqlMutant {
        name: "user-tool-update-resets-enabled",
        breaks: "changing a user's tool config switches the tool back on",
        file: TOOLS,
        from: "is_enabled = COALESCE($3, user_tools.is_enabled)",
        to: "is_enabled = COALESCE($3, true)",
        package: IT,
        test: "service_tools",
        caught_by: &[
            "effective_tools_are_enabled_ones_minus_the_users_switched_off_with_their_config",
        ],
    },
    SqlMutant {
        name: "effective-tools-ignore-user-switch",
        breaks: "a tool the user switched off is still offered",
        file: TOOLS,
        from: "WHERE t.is_enabled AND COALESCE(ut.is_enabled, true)",
        to: "WHERE t.is_enabled",
        package: IT,
        test: "service_tools",
        caught_by: &[
            "effective_tools_are_enabled_ones_minus_the_users_switched_off_with_their_config",
        ],
    },
    SqlMutant {
        name: "github-upsert-forgets-installer",
        breaks: "an update without installer clears the stored one",
        file: INTEGRATIONS,
        from: "installed_by_user_id = COALESCE(EXCLUDED.installed_by_user_id,\n                                             github_installations.installed_by_user_id)",
        to: "installed_by_user_id = EXCLUDED.installed_by_user_id",
        package: IT,
        test: "service_integrations",
        caught_by: &["a_github_installation_is_upserted_suspended_and_removed"],
    },
    SqlMutant {
        name: "suspend-moves-first-suspension",
        breaks: "suspending again overwrites the first suspension time",
        file: INTEGRATIONS,
        from: "SET suspended_at = COALESCE(suspended_at, now())",
        to: "SET suspended_at = now()",
        package: IT,
        test: "service_integrations",
        caught_by: &["a_github_installation_is_upserted_suspended_and_removed"],
    },
    SqlMutant {
        name: "active-connection-includes-inactive",
        breaks: "a deactivated connection still receives events",
        file: INTEGRATIONS,
        from: "WHERE {key_column} = $1 AND is_active",
        to: "WHERE {key_column} = $1",
        package: IT,
        test: "service_integrations",
        caught_by: &["slack_connections_upsert_deactivate_and_resolve_by_team"],
    },
    SqlMutant {
        name: "runner-no-advisory-lock",
        breaks: "two migration runs do not wait for each other",
        file: "migration/src/runner/lock.rs",
        from: "SELECT pg_try_advisory_xact_lock({MIGRATION_LOCK_KEY}), pg_backend_pid()",
        to: "SELECT true, pg_backend_pid()",
        package: "migration",
        test: "faults",
        caught_by: &["eight_processes_migrating_one_empty_database_apply_each_migration_once"],
    },
];

/// How a mutant fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A test failed: the names of the tests that failed.
    Caught(Vec<String>),
    /// Every test passed.
    Missed,
    /// The tests did not finish within the timeout (a hang is a kind of catch, reported apart).
    Timeout,
    /// The mutated source did not build.
    Unviable,
    /// `from` does not occur exactly once in the file: the statement changed; update the mutant.
    Stale(usize),
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Self::Caught(tests) => format!("caught by {}", tests.join(", ")),
            Self::Missed => "**MISSED**".to_owned(),
            Self::Timeout => "timeout".to_owned(),
            Self::Unviable => "unviable".to_owned(),
            Self::Stale(n) => format!("**STALE** (text found {n} times)"),
        }
    }
}

pub struct Options {
    pub only: Vec<String>,
    pub timeout: Duration,
    pub baseline: bool,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn backup_dir() -> PathBuf {
    workspace().join("target/sql-mutants/backup")
}

/// The original of a file while it is mutated; written back when dropped, however the mutant
/// ends (also on a panic in this process). A killed run leaves the backup for the next run.
struct Mutated {
    path: PathBuf,
    backup: PathBuf,
    original: String,
}

impl Mutated {
    fn apply(file: &str, original: String, mutated: &str) -> Result<Self> {
        let backup = backup_dir().join(file.replace('/', "__"));
        std::fs::create_dir_all(backup_dir())?;
        std::fs::write(&backup, &original)?;
        let path = workspace().join(file);
        std::fs::write(&path, mutated)?;
        Ok(Self {
            path,
            backup,
            original,
        })
    }
}

impl Drop for Mutated {
    fn drop(&mut self) {
        match std::fs::write(&self.path, &self.original) {
            Ok(()) => {
                let _ = std::fs::remove_file(&self.backup);
            }
            Err(err) => eprintln!(
                "could not restore {} ({err}); its original is in {}",
                self.path.display(),
                self.backup.display()
            ),
        }
    }
}

/// Puts back the originals a killed run left mutated.
fn restore_leftovers() -> Result<()> {
    let Ok(entries) = std::fs::read_dir(backup_dir()) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().replace("__", "/");
        std::fs::copy(entry.path(), workspace().join(&file))
            .with_context(|| format!("restoring {file} from {}", entry.path().display()))?;
        std::fs::remove_file(entry.path())?;
        eprintln!("restored {file}, left mutated by an interrupted run");
    }
    Ok(())
}

fn cargo_test(package: &str, test: &str) -> Command {
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(workspace())
        .args(["test", "--package", package, "--test", test]);
    cargo
}

/// Runs the test target; `None` on timeout, else whether it passed and the failed tests.
fn run_tests(package: &str, test: &str, timeout: Duration) -> Result<Option<(bool, Vec<String>)>> {
    use std::os::unix::process::CommandExt;
    let log = workspace().join("target/sql-mutants/last-test.log");
    std::fs::create_dir_all(log.parent().expect("a folder"))?;
    let mut child = cargo_test(package, test)
        .stdout(std::fs::File::create(&log)?)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("running cargo test")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            // The whole group: cargo, the test binary and anything it started.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let failed = output
        .lines()
        .filter_map(|line| line.strip_prefix("test ")?.strip_suffix(" ... FAILED"))
        .map(str::to_owned)
        .collect();
    Ok(Some((status.success(), failed)))
}

fn builds(package: &str, test: &str) -> Result<bool> {
    Ok(cargo_test(package, test)
        .arg("--no-run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success())
}

fn try_mutant(mutant: &SqlMutant, timeout: Duration) -> Result<Outcome> {
    let path = workspace().join(mutant.file);
    let original =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", mutant.file))?;
    let found = original.matches(mutant.from).count();
    if found != 1 {
        return Ok(Outcome::Stale(found));
    }
    let mutated = original.replacen(mutant.from, mutant.to, 1);
    let _restore = Mutated::apply(mutant.file, original, &mutated)?;
    if !builds(mutant.package, mutant.test)? {
        return Ok(Outcome::Unviable);
    }
    Ok(match run_tests(mutant.package, mutant.test, timeout)? {
        None => Outcome::Timeout,
        Some((true, _)) => Outcome::Missed,
        Some((false, failed)) => Outcome::Caught(failed),
    })
}

/// The mutants as a Markdown table (for docs/reliability.md).
pub fn table() -> String {
    let mut out =
        String::from("| mutant | file | breaks | covered by |\n| --- | --- | --- | --- |\n");
    for m in MUTANTS {
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {} | `{}` {} |",
            m.name,
            m.file,
            m.breaks,
            m.test,
            m.caught_by.join(", ")
        );
    }
    out
}

pub fn run(options: &Options) -> Result<()> {
    restore_leftovers()?;
    let chosen: Vec<&SqlMutant> = MUTANTS
        .iter()
        .filter(|m| options.only.is_empty() || options.only.iter().any(|o| o == m.name))
        .collect();
    if chosen.is_empty() {
        bail!("no mutant named {:?}; `--list` shows them", options.only);
    }
    if options.baseline {
        let targets: BTreeSet<(&str, &str)> = chosen.iter().map(|m| (m.package, m.test)).collect();
        for (package, test) in targets {
            eprintln!("baseline: {package} --test {test} on the unmutated source...");
            match run_tests(package, test, options.timeout)? {
                Some((true, _)) => {}
                _ => bail!(
                    "`cargo test -p {package} --test {test}` fails (or hangs) without any mutation; fix that first"
                ),
            }
        }
    }
    let mut report = String::from("| mutant | file | result |\n| --- | --- | --- |\n");
    let mut missed = 0;
    for (i, mutant) in chosen.iter().enumerate() {
        eprint!("[{}/{}] {} ... ", i + 1, chosen.len(), mutant.name);
        let started = Instant::now();
        let outcome = try_mutant(mutant, options.timeout)?;
        eprintln!(
            "{} ({:.0} s)",
            outcome.label(),
            started.elapsed().as_secs_f64()
        );
        if let Outcome::Caught(failed) = &outcome
            && !mutant
                .caught_by
                .iter()
                .any(|t| failed.iter().any(|f| f == t))
            && !mutant.caught_by.is_empty()
        {
            eprintln!(
                "    note: none of the expected tests failed: {:?}",
                mutant.caught_by
            );
        }
        if matches!(outcome, Outcome::Missed | Outcome::Stale(_)) {
            missed += 1;
        }
        let _ = writeln!(
            report,
            "| `{}` | `{}` | {} |",
            mutant.name,
            mutant.file,
            outcome.label()
        );
    }
    let path = workspace().join("target/sql-mutants/report.md");
    std::fs::write(&path, &report)?;
    println!("{report}");
    eprintln!("report written to {}", path.display());
    if missed > 0 {
        bail!("{missed} mutant(s) missed or stale");
    }
    Ok(())
}
