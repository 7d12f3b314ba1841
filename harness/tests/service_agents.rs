//! service::agents against real PostgreSQL: guarded transitions (also when raced), tool calls
//! with gapless sequences under concurrent appends, pages and token totals.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use entity::enums::{AgentRunStatus, ToolCallStatus, TriggerSource};
use harness::{TestDb, fixtures, scalar};
use sea_orm::ConnectionTrait;
use serde_json::json;
use service::{
    Error,
    agents::{self, NewRunInput, NewToolCallInput, TokenCounts, ToolCallOutcome},
};

/// The organization of every run here.
const ORG: &str = fixtures::ORG_ID;

fn run_input(trigger: TriggerSource) -> NewRunInput {
    NewRunInput {
        organization_id: fixtures::ORG_ID.to_owned(),
        user_id: Some(fixtures::OWNER_ID.to_owned()),
        trigger_source: trigger,
        slack_event_id: None,
        linear_event_id: None,
        model: "claude-sonnet".to_owned(),
        input: json!({ "prompt": "triage" }),
    }
}

fn call(name: &str) -> NewToolCallInput {
    NewToolCallInput {
        tool_name: name.to_owned(),
        tool_id: None,
        input: json!({ "q": name }),
    }
}

#[tokio::test]
async fn a_run_goes_queued_running_succeeded_with_its_timestamps_and_tokens() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let mut input = run_input(TriggerSource::Slack);
    input.slack_event_id = Some(fixtures::SLACK_EVENT_ID.parse().unwrap());
    let run = agents::create_run(db.conn(), input).await.unwrap();
    assert_eq!(run.status(), Ok(AgentRunStatus::Queued));
    assert_eq!(run.user_id.as_deref(), Some(fixtures::OWNER_ID));
    assert_eq!(run.input, json!({ "prompt": "triage" }));
    assert_eq!(
        run.slack_event_id.unwrap().to_string(),
        fixtures::SLACK_EVENT_ID
    );
    let running = agents::start_run(db.conn(), ORG, run.id).await.unwrap();
    assert!(running.started_at.is_some());
    let tokens = TokenCounts {
        prompt_tokens: 1200,
        completion_tokens: 340,
    };
    let done = agents::succeed_run(db.conn(), ORG, run.id, json!({ "answer": 42 }), tokens)
        .await
        .unwrap();
    assert_eq!(done.status(), Ok(AgentRunStatus::Succeeded));
    assert_eq!((done.prompt_tokens, done.completion_tokens), (1200, 340));
    assert!(done.completed_at.unwrap() >= done.started_at.unwrap());
    let again = agents::start_run(db.conn(), ORG, run.id).await;
    assert!(
        matches!(&again, Err(Error::InvalidTransition { from, to: "running", .. }) if from == "succeeded"),
        "{again:?}"
    );
    let unchanged = agents::cancel_run(db.conn(), ORG, run.id).await;
    assert!(matches!(unchanged, Err(Error::InvalidTransition { .. })));
    assert_eq!(
        scalar(
            db.conn(),
            &format!(
                "SELECT count(*) FROM agent_runs WHERE id = '{}' AND status = 'succeeded'",
                run.id
            )
        )
        .await,
        1
    );
}

#[tokio::test]
async fn bad_run_input_is_refused_before_writing() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let mut mismatched = run_input(TriggerSource::Api);
    mismatched.slack_event_id = Some(fixtures::SLACK_EVENT_ID.parse().unwrap());
    assert!(matches!(
        agents::create_run(db.conn(), mismatched).await,
        Err(Error::Validation { .. })
    ));
    let mut dangling = run_input(TriggerSource::Linear);
    dangling.linear_event_id = Some(uuid::Uuid::new_v4());
    assert!(matches!(
        agents::create_run(db.conn(), dangling).await,
        Err(Error::MissingReference { .. })
    ));
    let mut nowhere = run_input(TriggerSource::Api);
    nowhere.organization_id = "org_missing".into();
    assert!(matches!(
        agents::create_run(db.conn(), nowhere).await,
        Err(Error::MissingReference { .. })
    ));
    let run = agents::create_run(db.conn(), run_input(TriggerSource::Api))
        .await
        .unwrap();
    agents::start_run(db.conn(), ORG, run.id).await.unwrap();
    let too_many = TokenCounts {
        prompt_tokens: u32::MAX,
        completion_tokens: 0,
    };
    assert!(matches!(
        agents::succeed_run(db.conn(), ORG, run.id, json!({}), too_many).await,
        Err(Error::Validation { .. })
    ));
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM agent_runs WHERE status = 'running'"
        )
        .await,
        1,
        "nothing written"
    );
    assert!(matches!(
        agents::start_run(db.conn(), ORG, uuid::Uuid::new_v4()).await,
        Err(Error::NotFound {
            entity: "agent run",
            ..
        })
    ));
}

#[tokio::test]
async fn runs_fail_or_are_cancelled_from_the_allowed_states_only() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let queued = agents::create_run(db.conn(), run_input(TriggerSource::Api))
        .await
        .unwrap();
    let failed_early =
        agents::fail_run(db.conn(), ORG, queued.id, "boom", TokenCounts::default()).await;
    assert!(
        matches!(&failed_early, Err(Error::InvalidTransition { from, .. }) if from == "queued")
    );
    let cancelled = agents::cancel_run(db.conn(), ORG, queued.id).await.unwrap();
    assert_eq!(cancelled.status(), Ok(AgentRunStatus::Cancelled));
    assert!(cancelled.completed_at.is_some());
    let other = agents::create_run(db.conn(), run_input(TriggerSource::Api))
        .await
        .unwrap();
    agents::start_run(db.conn(), ORG, other.id).await.unwrap();
    let failed = agents::fail_run(
        db.conn(),
        ORG,
        other.id,
        "model timeout",
        TokenCounts {
            prompt_tokens: 5,
            completion_tokens: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.error.as_deref()),
        ("failed", Some("model timeout"))
    );
}

#[tokio::test]
async fn racing_transitions_leave_only_a_legal_history() {
    for _ in 0..5 {
        let db = TestDb::migrated().await;
        fixtures::seed_everything(db.conn()).await.unwrap();
        let run = agents::create_run(db.conn(), run_input(TriggerSource::Api))
            .await
            .unwrap();
        agents::start_run(db.conn(), ORG, run.id).await.unwrap();
        // succeed, fail, cancel, succeed: four moves out of `running` at once.
        let results = harness::on_separate_connections(db.url(), 4, move |conn, i| async move {
            let tokens = TokenCounts::default();
            match i {
                1 => agents::fail_run(&conn, ORG, run.id, "x", tokens).await,
                2 => agents::cancel_run(&conn, ORG, run.id).await,
                _ => agents::succeed_run(&conn, ORG, run.id, json!({}), tokens).await,
            }
        })
        .await;
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "exactly one move out of running wins: {results:?}"
        );
        assert!(
            results
                .iter()
                .filter(|r| r.is_err())
                .all(|r| matches!(r, Err(Error::InvalidTransition { .. })))
        );
        let (stored, _) = agents::run_with_tool_calls(db.conn(), ORG, run.id)
            .await
            .unwrap();
        assert_eq!(
            stored.status, winners[0].status,
            "the database holds the winner's state"
        );
    }
}

#[tokio::test]
async fn tool_calls_get_gapless_sequences_even_when_appended_at_once() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let run = agents::create_run(db.conn(), run_input(TriggerSource::Api))
        .await
        .unwrap();
    let early = agents::append_tool_call(db.conn(), ORG, run.id, call("too_early")).await;
    assert!(
        matches!(&early, Err(Error::InvalidTransition { from, .. }) if from == "queued"),
        "{early:?}"
    );
    agents::start_run(db.conn(), ORG, run.id).await.unwrap();
    let appended = harness::on_separate_connections(db.url(), 16, move |conn, i| async move {
        agents::append_tool_call(&conn, ORG, run.id, call(&format!("tool_{i}")))
            .await
            .unwrap()
    })
    .await;
    let sequences: HashSet<i32> = appended.iter().map(|c| c.sequence).collect();
    assert_eq!(sequences, (0..16).collect::<HashSet<i32>>());
    let (_, calls) = agents::run_with_tool_calls(db.conn(), ORG, run.id)
        .await
        .unwrap();
    assert_eq!(
        calls.iter().map(|c| c.sequence).collect::<Vec<_>>(),
        (0..16).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_tool_call_runs_and_finishes_with_output_or_error() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let run = agents::create_run(db.conn(), run_input(TriggerSource::Api))
        .await
        .unwrap();
    agents::start_run(db.conn(), ORG, run.id).await.unwrap();
    let mut search = call("github_search");
    search.tool_id = Some(fixtures::TOOL_ID.parse().unwrap());
    let first = agents::append_tool_call(db.conn(), ORG, run.id, search)
        .await
        .unwrap();
    let second = agents::append_tool_call(db.conn(), ORG, run.id, call("slack_post"))
        .await
        .unwrap();
    let started = agents::start_tool_call(db.conn(), ORG, first.id)
        .await
        .unwrap();
    assert_eq!(started.status(), Ok(ToolCallStatus::Running));
    let again = agents::start_tool_call(db.conn(), ORG, first.id).await;
    assert!(
        matches!(&again, Err(Error::InvalidTransition { from, .. }) if from == "running"),
        "{again:?}"
    );
    let ok = agents::finish_tool_call(
        db.conn(),
        ORG,
        first.id,
        ToolCallOutcome::Succeeded(json!({ "hits": 3 })),
        120,
    )
    .await
    .unwrap();
    assert_eq!(
        (ok.status.as_str(), ok.duration_ms),
        ("succeeded", Some(120))
    );
    let failed = agents::finish_tool_call(
        db.conn(),
        ORG,
        second.id,
        ToolCallOutcome::Failed("rate limited".into()),
        15,
    )
    .await
    .unwrap();
    assert_eq!(failed.error.as_deref(), Some("rate limited"));
    assert!(
        failed.started_at.is_some(),
        "a call finished from pending still gets a start time"
    );
    let twice = agents::finish_tool_call(
        db.conn(),
        ORG,
        first.id,
        ToolCallOutcome::Failed("late".into()),
        1,
    )
    .await;
    assert!(matches!(&twice, Err(Error::InvalidTransition { from, .. }) if from == "succeeded"));
    let restarted = agents::start_tool_call(db.conn(), ORG, first.id).await;
    assert!(
        matches!(&restarted, Err(Error::InvalidTransition { from, .. }) if from == "succeeded"),
        "{restarted:?}"
    );
    let (stored, calls) = agents::run_with_tool_calls(db.conn(), ORG, run.id)
        .await
        .unwrap();
    assert_eq!(stored.id, run.id);
    assert_eq!(
        calls
            .iter()
            .map(|c| c.tool_name.as_str())
            .collect::<Vec<_>>(),
        ["github_search", "slack_post"]
    );
    assert!(matches!(
        agents::run_with_tool_calls(db.conn(), ORG, uuid::Uuid::new_v4()).await,
        Err(Error::NotFound { .. })
    ));
}

/// `(created_at, id)` of every run of `organization`, following `next` from page to page.
async fn every_page(
    db: &TestDb,
    organization: &str,
    per_page: u64,
) -> Vec<(chrono::DateTime<chrono::FixedOffset>, uuid::Uuid)> {
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = agents::list_runs(db.conn(), organization, after, per_page)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|r| (r.created_at, r.id)));
        match page.next {
            Some(next) => after = Some(next),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn an_organizations_runs_page_newest_first_and_tokens_add_up() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let before = Utc::now().fixed_offset();
    for i in 0..23u32 {
        let run = agents::create_run(db.conn(), run_input(TriggerSource::Schedule))
            .await
            .unwrap();
        if i % 2 == 0 {
            agents::start_run(db.conn(), ORG, run.id).await.unwrap();
            let tokens = TokenCounts {
                prompt_tokens: 100,
                completion_tokens: i,
            };
            agents::succeed_run(db.conn(), ORG, run.id, json!({}), tokens)
                .await
                .unwrap();
        }
    }
    let seen = every_page(&db, fixtures::ORG_ID, 10).await;
    assert_eq!(seen.len(), 24, "23 new runs and the fixture's");
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
    let usage = agents::token_usage(
        db.conn(),
        fixtures::ORG_ID,
        before,
        (Utc::now() + Duration::seconds(1)).fixed_offset(),
    )
    .await
    .unwrap();
    assert_eq!(usage.runs, 23);
    assert_eq!(usage.prompt_tokens, 12 * 100);
    assert_eq!(usage.completion_tokens, (0..23).step_by(2).sum::<i64>());
    let none = agents::token_usage(
        db.conn(),
        fixtures::OTHER_ORG_ID,
        before,
        Utc::now().fixed_offset(),
    )
    .await
    .unwrap();
    assert_eq!((none.runs, none.prompt_tokens), (0, 0));
    assert!(matches!(
        agents::token_usage(
            db.conn(),
            fixtures::ORG_ID,
            Utc::now().fixed_offset(),
            before
        )
        .await,
        Err(Error::Validation { .. })
    ));
}

#[tokio::test]
async fn runs_sharing_a_created_at_page_without_gaps_and_ranges_exclude_their_end() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    // 12 runs, 3 per second: pages of 5 end inside a group of equal times, where only the `id`
    // tie-break continues correctly.
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO agent_runs (organization_id, trigger_source, model, prompt_tokens, created_at)
             SELECT '{}', 'api', 'claude-sonnet', 1,
                    timestamptz '2026-01-01 00:00:00+00' + (g / 3) * interval '1 second'
             FROM generate_series(0, 11) g",
            fixtures::OTHER_ORG_ID
        ))
        .await
        .unwrap();
    let seen = every_page(&db, fixtures::OTHER_ORG_ID, 5).await;
    let at = |second: i64| {
        chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap()
            + Duration::seconds(second)
    };
    let inserted = seen.iter().filter(|(created, _)| *created < at(4)).count();
    assert_eq!(inserted, 12, "every run of a shared second is listed once");
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first"
    );
    // [from, to): the runs of second 3 (created exactly at `to`) are outside.
    let usage = agents::token_usage(db.conn(), fixtures::OTHER_ORG_ID, at(1), at(3))
        .await
        .unwrap();
    assert_eq!((usage.runs, usage.prompt_tokens), (6, 6));
    let empty = agents::token_usage(db.conn(), fixtures::OTHER_ORG_ID, at(1), at(1))
        .await
        .unwrap();
    assert_eq!(empty.runs, 0, "an empty range is not an error");
}

#[tokio::test]
async fn another_organizations_run_and_events_are_out_of_reach() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let theirs: uuid::Uuid = fixtures::OTHER_ORG_RUN_ID.parse().unwrap();
    let tokens = TokenCounts::default();
    let not_found = |result: Result<entity::AgentRun, Error>| {
        assert!(
            matches!(
                &result,
                Err(Error::NotFound {
                    entity: "agent run",
                    ..
                })
            ),
            "{result:?}"
        )
    };
    not_found(agents::start_run(db.conn(), ORG, theirs).await);
    not_found(agents::cancel_run(db.conn(), ORG, theirs).await);
    not_found(agents::succeed_run(db.conn(), ORG, theirs, json!({}), tokens).await);
    not_found(agents::fail_run(db.conn(), ORG, theirs, "x", tokens).await);
    assert!(matches!(
        agents::append_tool_call(db.conn(), ORG, theirs, call("x")).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        agents::run_with_tool_calls(db.conn(), ORG, theirs).await,
        Err(Error::NotFound { .. })
    ));
    let call_id: uuid::Uuid = fixtures::TOOL_CALL_ID.parse().unwrap();
    assert!(matches!(
        agents::start_tool_call(db.conn(), fixtures::OTHER_ORG_ID, call_id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        agents::finish_tool_call(
            db.conn(),
            fixtures::OTHER_ORG_ID,
            call_id,
            ToolCallOutcome::Failed("x".into()),
            1
        )
        .await,
        Err(Error::NotFound { .. })
    ));
    // A run links only an event of its own organization.
    let mut input = run_input(TriggerSource::Slack);
    input.organization_id = fixtures::OTHER_ORG_ID.into();
    input.slack_event_id = Some(fixtures::SLACK_EVENT_ID.parse().unwrap());
    assert!(matches!(
        agents::create_run(db.conn(), input).await,
        Err(Error::MissingReference { .. })
    ));
    // The fixture's run, with its tool call, is untouched.
    let (run, calls) =
        agents::run_with_tool_calls(db.conn(), ORG, fixtures::AGENT_RUN_ID.parse().unwrap())
            .await
            .unwrap();
    assert_eq!((run.status.as_str(), calls.len()), ("queued", 1));
}
