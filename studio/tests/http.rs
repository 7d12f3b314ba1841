//! Every page of the studio over HTTP, against a real seeded database: what it lists, how it
//! pages, sorts and filters, what it never shows, and how `--write` edits and deletes.

mod common;

use axum::http::StatusCode;
use catalog::Catalog;
use common::{App, Reply, attr, between, listed_ids, listed_keys, query, unescape};
use db_connect::secrets::is_secret_column as is_secret;
use harness::{fixtures::*, scalar, text_rows};
use sea_orm::{ConnectionTrait, TransactionTrait};

#[tokio::test]
async fn the_index_lists_every_table_by_domain_with_its_row_count() {
    let app = App::start(false).await;
    let page = app.page("/").await;
    let catalog = Catalog::load(app.db.conn()).await.unwrap();
    for table in &catalog.tables {
        let row = between(&page, &format!("data-table=\"{}\"", table.name), "</tr>");
        let shown: i64 = between(row, "<span class=\"rows\">", "</span>")
            .parse()
            .unwrap();
        let actual = scalar(
            app.db.conn(),
            &format!("SELECT count(*) FROM {}", table.name),
        )
        .await;
        assert_eq!(shown, actual, "{}", table.name);
    }
    let organizations = between(&page, "data-domain=\"Organizations\"", "</section>");
    for table in ["organizations", "members", "invitations"] {
        assert!(
            organizations.contains(&format!("data-table=\"{table}\"")),
            "{table}"
        );
    }
    assert!(!organizations.contains("data-table=\"users\""));
    let agents = between(&page, "data-domain=\"Agents\"", "</section>");
    assert!(
        agents.contains("data-table=\"agent_runs\"")
            && agents.contains("data-table=\"tool_calls\"")
    );
    assert!(page.contains("read-only"));
}

/// Names that need quoting (a space, a quote, a keyword) reach SQL only as quoted identifiers.
#[tokio::test]
async fn a_table_created_after_start_appears_under_other_whatever_its_name() {
    let app = App::start(false).await;
    app.db
        .conn()
        .execute_unprepared(
            r#"CREATE TABLE "odd ""table" ("from" int PRIMARY KEY, "select" text);
               CREATE INDEX ON "odd ""table" ("select");
               INSERT INTO "odd ""table" VALUES (1, 'a'), (2, 'b'), (3, NULL)"#,
        )
        .await
        .unwrap();
    let page = app.page("/").await;
    let other = between(&page, "data-domain=\"Other\"", "</section>");
    assert!(other.contains("data-table=\"odd &quot;table\""), "{other}");
    assert!(other.contains("href=\"/tables/odd%20%22table\""), "{other}");
    let base = "/tables/odd%20%22table";
    assert_eq!(listed_ids(&app.page(base).await), ["1", "2", "3"]);
    let sorted = app.page(&format!("{base}?sort=select&dir=desc")).await;
    assert_eq!(
        listed_ids(&sorted),
        ["3", "2", "1"],
        "NULL first when descending"
    );
    let filtered = app.page(&format!("{base}?eq.select=b")).await;
    assert_eq!(listed_ids(&filtered), ["2"]);
    let row = app.page(&format!("{base}/row?from=3")).await;
    assert!(row.contains("data-column=\"select\""), "{row}");

    // Integer keys page as integers (10 after 9), not as their text.
    app.db
        .conn()
        .execute_unprepared(
            r#"INSERT INTO "odd ""table" SELECT i, 'z' FROM generate_series(4, 12) AS i"#,
        )
        .await
        .unwrap();
    let mut pages = Vec::new();
    let mut uri = format!("{base}?limit=5");
    loop {
        let page = app.page(&uri).await;
        pages.push(listed_ids(&page));
        let Some(next) = attr(&page, "rel=\"next\"", "href") else {
            break;
        };
        uri = next;
    }
    let numbers = |r: std::ops::RangeInclusive<i32>| r.map(|i| i.to_string()).collect::<Vec<_>>();
    assert_eq!(pages, [numbers(1..=5), numbers(6..=10), numbers(11..=12)]);
}

/// Puts a recognisable value in every secret column and reads every page a person can open:
/// the value appears on none of them, and each row page shows the mask instead.
#[tokio::test]
async fn no_page_shows_a_secret() {
    let app = App::start(true).await;
    let catalog = Catalog::load(app.db.conn()).await.unwrap();
    let mut sentinels = Vec::new();
    for table in &catalog.tables {
        for column in table
            .columns
            .iter()
            .filter(|c| is_secret(&table.name, &c.name))
        {
            let sentinel = format!("SENTINEL{}x{}", table.name, column.name).replace('_', "");
            app.db
                .conn()
                .execute_unprepared(&format!(
                    "UPDATE {} SET {} = '{sentinel}-' || md5(ctid::text)",
                    table.name, column.name
                ))
                .await
                .unwrap();
            sentinels.push(sentinel);
        }
    }
    let mut pages = vec![app.page("/").await, app.page("/erd").await];
    for table in &catalog.tables {
        let list = app.page(&format!("/tables/{}", table.name)).await;
        for key in listed_keys(&list) {
            assert_eq!(
                key.iter().map(|(c, _)| c).collect::<Vec<_>>(),
                table.primary_key.iter().collect::<Vec<_>>(),
                "{}: a row link carries the whole primary key",
                table.name
            );
            let key = query(&key);
            let row = app.page(&format!("/tables/{}/row?{key}", table.name)).await;
            for column in table
                .columns
                .iter()
                .filter(|c| is_secret(&table.name, &c.name))
            {
                let cell = between(&row, &format!("data-column=\"{}\"", column.name), "</tr>");
                assert!(
                    cell.contains("class=\"masked\"") || cell.contains("NULL"),
                    "{}.{} not masked: {cell}",
                    table.name,
                    column.name
                );
            }
            pages.push(row);
            pages.push(
                app.page(&format!("/tables/{}/row/edit?{key}", table.name))
                    .await,
            );
            pages.push(
                app.page(&format!("/tables/{}/row/delete?{key}", table.name))
                    .await,
            );
        }
        pages.push(list);
    }
    assert!(pages.len() > 60, "only {} pages read", pages.len());
    for page in &pages {
        for sentinel in &sentinels {
            assert!(!page.contains(sentinel.as_str()), "{sentinel} shown");
        }
    }
    // A secret cannot be found by guessing it in a filter either.
    let reply = app
        .get("/tables/sessions?eq.token=SENTINELsessionsxtoken")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body.contains("sessions.token holds secrets"),
        "{}",
        reply.body
    );
    let reply = app
        .get("/tables/sessions/row?token=SENTINELsessionsxtoken")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

/// 57 events of two organizations, a third without a connection and several sharing one
/// `created_at`: walking the next links visits each exactly once in the order SQL gives (ties
/// broken by the whole primary key, `(organization_id, id)`), and walking back the previous
/// links returns the same pages in reverse.
#[tokio::test]
async fn keyset_pages_walk_every_row_once_both_ways() {
    let app = App::start(false).await;
    app.db
        .conn()
        .execute_unprepared(&format!(
            "INSERT INTO slack_events (organization_id, slack_connection_id, event_id, event_type, team_id, payload, created_at)
             SELECT CASE WHEN i % 6 = 0 THEN '{OTHER_ORG_ID}' ELSE '{ORG_ID}' END,
                    CASE WHEN i % 3 = 0 THEN NULL ELSE '{SLACK_CONNECTION_ID}'::uuid END,
                    'Ev-' || i, 'message', 'T1', '{{}}', timestamptz '2026-11-01' + (i / 4) * interval '1 minute'
             FROM generate_series(1, 57) AS i;
             -- A nullable sort column: the schema's own index on it leads with organization_id.
             CREATE INDEX ON slack_events (slack_connection_id)"
        ))
        .await
        .unwrap();
    app.page("/").await; // reloads the catalog, with the new index
    let cases = [
        (
            "created_at",
            "desc",
            "created_at DESC, organization_id DESC, id DESC",
        ),
        (
            "created_at",
            "asc",
            "created_at ASC, organization_id ASC, id ASC",
        ),
        (
            "slack_connection_id",
            "asc",
            "slack_connection_id ASC NULLS LAST, organization_id ASC, id ASC",
        ),
        (
            "slack_connection_id",
            "desc",
            "slack_connection_id DESC NULLS FIRST, organization_id DESC, id DESC",
        ),
        ("organization_id", "desc", "organization_id DESC, id DESC"),
    ];
    for (sort, dir, order) in cases {
        let expected: Vec<String> = text_rows(
            app.db.conn(),
            &format!("SELECT id::text FROM slack_events ORDER BY {order}"),
        )
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect();
        let mut pages = Vec::new();
        let mut uri = format!("/tables/slack_events?sort={sort}&dir={dir}&limit=10");
        loop {
            let page = app.page(&uri).await;
            pages.push(listed_ids(&page));
            match attr(&page, "rel=\"next\"", "href") {
                Some(next) => uri = next,
                None => break,
            }
            assert!(pages.len() < 10, "{sort} {dir}: the pages do not end");
        }
        assert_eq!(pages.concat(), expected, "{sort} {dir}");
        assert_eq!(pages.len(), 6);
        // Back from the last page.
        let mut page = app.page(&uri).await;
        let mut back = vec![listed_ids(&page)];
        while let Some(prev) = attr(&page, "rel=\"prev\"", "href") {
            page = app.page(&prev).await;
            back.push(listed_ids(&page));
        }
        back.reverse();
        assert_eq!(back, pages, "{sort} {dir} backwards");
    }
}

#[tokio::test]
async fn sorting_needs_an_index_and_the_refusal_names_the_sortable_columns() {
    let app = App::start(false).await;
    let reply = app.get("/tables/slack_events?sort=team_id").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let body = unescape(&reply.body);
    assert!(
        body.contains("slack_events.team_id cannot be sorted by: it leads no index"),
        "{body}"
    );
    assert!(
        body.contains("created_at") && body.contains("organization_id"),
        "{body}"
    );
    let reply = app.get("/tables/slack_events?dir=sideways").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = app.get("/tables/slack_events?limit=100000").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = app
        .get("/tables/slack_events?after=%5B%22x%22%5D&sort=created_at")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(unescape(&reply.body).contains("does not fit this sort"));
}

#[tokio::test]
async fn equality_filters_narrow_the_rows_and_bad_values_are_named() {
    let app = App::start(false).await;
    app.db
        .conn()
        .execute_unprepared(
            "UPDATE agent_runs SET status = 'failed' WHERE id = '00000000-0000-4000-8000-00000000000a'",
        )
        .await
        .unwrap();
    let page = app.page("/tables/agent_runs?eq.status=failed").await;
    assert_eq!(listed_ids(&page), [OTHER_ORG_RUN_ID]);
    let page = app
        .page(&format!(
            "/tables/agent_runs?eq.status=queued&eq.organization_id={ORG_ID}"
        ))
        .await;
    assert_eq!(listed_ids(&page), [AGENT_RUN_ID]);
    // Empty boxes of the filter form are no filter.
    let page = app.page("/tables/agent_runs?eq.status=&eq.model=").await;
    assert_eq!(listed_ids(&page).len(), 2);
    // Typed columns compare as their type: jsonb, arrays, booleans.
    let page = app
        .page("/tables/slack_connections?eq.scopes=%7B%7D&eq.is_active=true")
        .await;
    assert_eq!(listed_ids(&page), [SLACK_CONNECTION_ID]);

    let reply = app.get("/tables/agent_runs?eq.id=not-a-uuid").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        unescape(&reply.body).contains("invalid input syntax for type uuid: \"not-a-uuid\""),
        "{}",
        reply.body
    );
    let reply = app.get("/tables/agent_runs?eq.nope=1").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(unescape(&reply.body).contains("agent_runs has no column `nope`"));
    let reply = app.get("/tables/agent_runs?color=red").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(unescape(&reply.body).contains("unknown parameter `color`"));
}

#[tokio::test]
async fn values_are_shown_by_type() {
    let app = App::start(false).await;
    app.db
        .conn()
        .execute_unprepared(&format!(
            "UPDATE agent_runs SET input = '{{\"prompt\": \"hi <b>\", \"steps\": [1, 2]}}' WHERE id = '{AGENT_RUN_ID}';
             UPDATE slack_connections SET scopes = '{{chat:write,app_mentions:read}}';"
        ))
        .await
        .unwrap();
    let run = app
        .page(&format!(
            "/tables/agent_runs/row?organization_id={ORG_ID}&id={AGENT_RUN_ID}"
        ))
        .await;
    let input = between(&run, "data-column=\"input\"", "</tr>");
    assert!(input.contains("<details class=\"json\" open>"), "{input}");
    // Pretty-printed, and escaped: the markup in the value is text.
    assert!(
        input.contains("  &quot;prompt&quot;: &quot;hi &lt;b&gt;&quot;,\n"),
        "{input}"
    );
    let list = app.page("/tables/agent_runs").await;
    assert!(
        list.contains("<details class=\"json\"><summary>"),
        "collapsed in lists"
    );

    let expected = text_rows(
        app.db.conn(),
        &format!(
            "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
             FROM agent_runs WHERE id = '{AGENT_RUN_ID}'"
        ),
    )
    .await[0][0]
        .clone()
        .unwrap();
    let created = between(&run, "data-column=\"created_at\"", "</tr>");
    assert!(
        created.contains(&format!("<td>{expected}</td>")),
        "{created}"
    );
    chrono::DateTime::parse_from_rfc3339(&expected).expect("ISO 8601");
    assert!(expected.ends_with('Z'));

    let connection = app
        .page(&format!(
            "/tables/slack_connections/row?organization_id={ORG_ID}&id={SLACK_CONNECTION_ID}"
        ))
        .await;
    let scopes = between(&connection, "data-column=\"scopes\"", "</tr>");
    assert!(
        scopes.contains(
            "<span class=\"chip\">chat:write</span><span class=\"chip\">app_mentions:read</span>"
        ),
        "{scopes}"
    );
    let prompt_tokens = between(&run, "data-column=\"prompt_tokens\"", "</tr>");
    assert!(prompt_tokens.contains("<td>0</td>"), "{prompt_tokens}");
    let output = between(&run, "data-column=\"output\"", "</tr>");
    assert!(
        output.contains("<span class=\"null\">NULL</span>"),
        "{output}"
    );
}

/// Parent links and "what references this row" follow every column of a foreign key: under
/// the tenant keys a run's id is unique only within its organization, so another
/// organization's run with the same id and its tool calls never show on this run's page.
#[tokio::test]
async fn foreign_keys_link_to_the_parent_and_rows_list_what_references_them() {
    let app = App::start(false).await;
    let member = app
        .page(&format!(
            "/tables/members/row?organization_id={ORG_ID}&id=mem_other"
        ))
        .await;
    assert!(member.contains(&format!("href=\"/tables/users/row?id={OTHER_USER_ID}\"")));
    assert!(member.contains(&format!("href=\"/tables/organizations/row?id={ORG_ID}\"")));

    let org = app
        .page(&format!("/tables/organizations/row?id={ORG_ID}"))
        .await;
    let members = between(&org, "data-fk=\"fk_members_organization_id\"", "</section>");
    assert!(members.contains("(2 rows, on delete CASCADE)"), "{members}");
    let key = |id: &str| {
        vec![
            ("organization_id".to_owned(), ORG_ID.to_owned()),
            ("id".to_owned(), id.to_owned()),
        ]
    };
    assert_eq!(listed_keys(members), [key("mem_other"), key("mem_owner")]);
    let sessions = between(
        &org,
        "data-fk=\"fk_sessions_active_organization_id\"",
        "</section>",
    );
    assert!(sessions.contains("on delete SET NULL"));

    // Another organization's run with the same id, and a tool call of it.
    let other_call = "00000000-0000-4000-8000-0000000000ff";
    app.db
        .conn()
        .execute_unprepared(&format!(
            "INSERT INTO agent_runs (id, organization_id, trigger_source, model)
             VALUES ('{AGENT_RUN_ID}', '{OTHER_ORG_ID}', 'api', 'claude-sonnet');
             INSERT INTO tool_calls (id, organization_id, agent_run_id, tool_name, sequence)
             VALUES ('{other_call}', '{OTHER_ORG_ID}', '{AGENT_RUN_ID}', 'elsewhere', 0)"
        ))
        .await
        .unwrap();
    let run_url = format!("/tables/agent_runs/row?organization_id={ORG_ID}&id={AGENT_RUN_ID}");
    let run = app.page(&run_url).await;
    let calls = between(&run, "data-fk=\"fk_tool_calls_agent_run_id\"", "</section>");
    assert!(calls.contains("(1 row, on delete CASCADE)"), "{calls}");
    assert_eq!(listed_keys(calls), [key(TOOL_CALL_ID)]);
    // The run's event is a parent through a composite key: the link carries all of it.
    let event = between(&run, "data-column=\"slack_event_id\"", "</tr>");
    assert!(
        event.contains(&format!(
            "href=\"/tables/slack_events/row?organization_id={ORG_ID}&amp;id={SLACK_EVENT_ID}\""
        )),
        "{event}"
    );
    let other_run = app
        .page(&format!(
            "/tables/agent_runs/row?organization_id={OTHER_ORG_ID}&id={AGENT_RUN_ID}"
        ))
        .await;
    let calls = between(
        &other_run,
        "data-fk=\"fk_tool_calls_agent_run_id\"",
        "</section>",
    );
    assert_eq!(listed_ids(calls), [other_call]);
    // A tool call's run link leads to the run of its own organization.
    let call = app
        .page(&format!(
            "/tables/tool_calls/row?organization_id={OTHER_ORG_ID}&id={other_call}"
        ))
        .await;
    let parent = between(&call, "data-column=\"agent_run_id\"", "</tr>");
    assert!(
        parent.contains(&format!(
            "href=\"/tables/agent_runs/row?organization_id={OTHER_ORG_ID}&amp;id={AGENT_RUN_ID}\""
        )),
        "{parent}"
    );

    // More referencing rows than a row page shows: a link to all of them, filtered.
    app.db
        .conn()
        .execute_unprepared(&format!(
            "INSERT INTO tool_calls (organization_id, agent_run_id, tool_name, sequence)
             SELECT '{ORG_ID}', '{AGENT_RUN_ID}', 'step', i FROM generate_series(1, 14) AS i"
        ))
        .await
        .unwrap();
    let run = app.page(&run_url).await;
    let calls = between(&run, "data-fk=\"fk_tool_calls_agent_run_id\"", "</section>");
    assert_eq!(listed_ids(calls).len(), 10);
    let all = attr(calls, "All 15 rows", "href").expect("a link to all rows");
    assert_eq!(
        all,
        format!("/tables/tool_calls?eq.organization_id={ORG_ID}&eq.agent_run_id={AGENT_RUN_ID}")
    );
    assert_eq!(listed_ids(&app.page(&all).await).len(), 15);
}

/// A row is named by its whole primary key (or another unique key); a request that leaves out
/// part of it is refused, naming what is missing, on every page that names a row.
#[tokio::test]
async fn a_request_missing_part_of_the_key_is_refused_naming_the_missing_columns() {
    let app = App::start(true).await;
    for uri in [
        format!("/tables/agent_runs/row?id={AGENT_RUN_ID}"),
        format!("/tables/agent_runs/row/edit?id={AGENT_RUN_ID}"),
        format!("/tables/agent_runs/row/delete?id={AGENT_RUN_ID}"),
    ] {
        let reply = app.get(&uri).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            reply.body
        );
        assert!(
            reply.body.contains(
                "a row of agent_runs is named by its whole primary key (organization_id, id)"
            ) && reply.body.contains("missing organization_id"),
            "{uri}: {}",
            reply.body
        );
    }
    let reply = app
        .get(&format!("/tables/tool_calls/row?organization_id={ORG_ID}"))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("missing id"), "{}", reply.body);
    let reply = app
        .get(&format!(
            "/tables/agent_runs/row?organization_id={ORG_ID}&id={AGENT_RUN_ID}&id={OTHER_ORG_RUN_ID}"
        ))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.body.contains("agent_runs.id is given twice"),
        "{}",
        reply.body
    );
    // A write names its row by the primary key only, even where another unique key would do.
    for uri in [
        "/tables/organizations/row/edit?slug=acme",
        "/tables/organizations/row/delete?slug=acme",
    ] {
        let reply = app.get(uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(reply.body.contains("missing id"), "{uri}: {}", reply.body);
    }
    let org_form = OpenForm::open(&app, "organizations", "edit", &[("id", ORG_ID)]).await;
    for action in ["edit", "delete"] {
        let by_slug = OpenForm {
            key: vec![("slug".into(), "acme".into())],
            ..org_form.clone()
        };
        let fields = [("set.name", "Renamed"), ("confirm", "yes")];
        let reply = by_slug.submit(&app, "organizations", action, &fields).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{action}: {}",
            reply.body
        );
        assert!(
            reply.body.contains("missing id"),
            "{action}: {}",
            reply.body
        );
    }
    assert_eq!(organization_name(&app).await, "Acme");

    let open = OpenForm::open(
        &app,
        "agent_runs",
        "edit",
        &[("organization_id", ORG_ID), ("id", AGENT_RUN_ID)],
    )
    .await;
    for action in ["edit", "delete"] {
        let partial = OpenForm {
            key: vec![("id".into(), AGENT_RUN_ID.into())],
            ..open.clone()
        };
        let reply = partial
            .submit(
                &app,
                "agent_runs",
                action,
                &[("set.model", "other"), ("confirm", "yes")],
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{action}: {}",
            reply.body
        );
        assert!(
            reply.body.contains("missing organization_id"),
            "{action}: {}",
            reply.body
        );
    }
    let model = text_rows(
        app.db.conn(),
        &format!("SELECT model FROM agent_runs WHERE id = '{AGENT_RUN_ID}'"),
    )
    .await;
    assert_eq!(model, [[Some("claude-sonnet".to_owned())]]);
}

#[tokio::test]
async fn the_erd_page_draws_the_live_schema() {
    let app = App::start(false).await;
    let page = app.page("/erd").await;
    let catalog = Catalog::load(app.db.conn()).await.unwrap();
    let source = unescape(between(&page, "<pre class=\"mermaid\">", "</pre>"));
    assert_eq!(source, catalog::mermaid(&catalog));
    assert!(page.contains("<script src=\"/assets/mermaid.min.js\">"));
    let script = app.get("/assets/mermaid.min.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.body.len() > 1_000_000 && script.body.contains("erDiagram"));
    assert_eq!(app.get("/assets/erd.js").await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_tables_rows_and_pages_are_not_found() {
    let app = App::start(false).await;
    let reply = app.get("/tables/nope").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(unescape(&reply.body).contains("there is no table `nope`"));
    let reply = app.get("/tables/users/row?id=ghost").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.body.contains("users has no row where id = ghost"));
    let reply = app.get("/tables/users/row?name=Owner").await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "name is not a unique key"
    );
    // A unique key other than the primary key names a row too.
    let page = app.page("/tables/organizations/row?slug=acme").await;
    assert!(page.contains(ORG_ID));
    assert_eq!(app.get("/nowhere").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn requests_for_another_host_name_are_refused() {
    let app = App::start(false).await;
    let reply = app
        .send(
            axum::http::Request::get("/")
                .header("host", "attacker.example:4983")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.body.contains("attacker.example:4983"));
}

#[tokio::test]
async fn read_only_refuses_every_write() {
    let app = App::start(false).await;
    let row = app
        .page(&format!("/tables/organizations/row?id={ORG_ID}"))
        .await;
    assert!(!row.contains("/row/edit") && !row.contains("/row/delete"));
    for uri in [
        format!("/tables/organizations/row/edit?id={ORG_ID}"),
        format!("/tables/organizations/row/delete?id={ORG_ID}"),
    ] {
        let reply = app.get(&uri).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{uri}");
        assert!(reply.body.contains("--write"));
    }
    for uri in [
        "/tables/organizations/row/edit",
        "/tables/organizations/row/delete",
    ] {
        let reply = app
            .post(
                uri,
                &[
                    ("key.id", ORG_ID),
                    ("set.name", "Hacked"),
                    ("confirm", "yes"),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{uri}");
    }
    assert_eq!(organization_name(&app).await, "Acme");
}

async fn organization_name(app: &App) -> String {
    text_rows(
        app.db.conn(),
        &format!("SELECT name FROM organizations WHERE id = '{ORG_ID}'"),
    )
    .await[0][0]
        .clone()
        .unwrap()
}

/// A write form as the browser got it: the row's key, its token and the row version it was
/// opened on.
#[derive(Clone)]
struct OpenForm {
    key: Vec<(String, String)>,
    token: String,
    version: String,
}

impl OpenForm {
    /// Opens the edit form (`/edit`) or delete confirmation (`/delete`) of `table`'s row `key`.
    async fn open(app: &App, table: &str, action: &str, key: &[(&str, &str)]) -> Self {
        let key: Vec<(String, String)> = key
            .iter()
            .map(|(c, v)| (c.to_string(), v.to_string()))
            .collect();
        let page = app
            .page(&format!("/tables/{table}/row/{action}?{}", query(&key)))
            .await;
        for (column, value) in &key {
            let field = format!("name=\"key.{column}\"");
            assert_eq!(
                attr(&page, &field, "value").as_ref(),
                Some(value),
                "{field}"
            );
        }
        Self {
            key,
            token: attr(&page, "name=\"token\"", "value").unwrap(),
            version: attr(&page, "name=\"version\"", "value").unwrap(),
        }
    }

    /// Submits it with `fields` added.
    async fn submit(&self, app: &App, table: &str, action: &str, fields: &[(&str, &str)]) -> Reply {
        let key: Vec<(String, &str)> = self
            .key
            .iter()
            .map(|(c, v)| (format!("key.{c}"), v.as_str()))
            .collect();
        let mut form = vec![
            ("token", self.token.as_str()),
            ("version", self.version.as_str()),
        ];
        form.extend(key.iter().map(|(c, v)| (c.as_str(), *v)));
        form.extend_from_slice(fields);
        app.post(&format!("/tables/{table}/row/{action}"), &form)
            .await
    }
}

#[tokio::test]
async fn an_edit_is_confirmed_first_then_committed() {
    let app = App::start(true).await;
    let form = app
        .page(&format!("/tables/organizations/row/edit?id={ORG_ID}"))
        .await;
    assert!(form.contains("name=\"set.name\""));
    assert!(
        !form.contains("name=\"set.id\""),
        "the primary key is not editable"
    );
    let open = OpenForm::open(&app, "organizations", "edit", &[("id", ORG_ID)]).await;
    let fields = [
        ("set.name", "Acme Inc"),
        ("set.slug", "acme"),
        ("set.logo", ""),
        ("null.logo", "1"),
    ];
    let review = open.submit(&app, "organizations", "edit", &fields).await;
    assert_eq!(review.status, StatusCode::OK, "{}", review.body);
    let changes = between(&review.body, "<table class=\"grid changes\">", "</table>");
    assert!(changes.contains("data-column=\"name\""), "{changes}");
    assert!(
        !changes.contains("data-column=\"slug\""),
        "unchanged columns are not listed"
    );
    assert!(!changes.contains("data-column=\"logo\""), "NULL stays NULL");
    assert_eq!(
        organization_name(&app).await,
        "Acme",
        "nothing written before confirming"
    );

    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let saved = open.submit(&app, "organizations", "edit", &confirmed).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(organization_name(&app).await, "Acme Inc");
    let location = saved.location.unwrap();
    assert_eq!(
        location,
        format!("/tables/organizations/row?id={ORG_ID}&notice=saved")
    );
    assert!(app.page(&location).await.contains("Saved."));

    // jsonb, arrays and booleans through the same form.
    let open = OpenForm::open(&app, "tools", "edit", &[("id", TOOL_ID)]).await;
    let fields = [
        ("set.input_schema", "{\"type\": \"object\"}"),
        ("set.tags", "{search,code}"),
        ("set.is_enabled", "false"),
        ("confirm", "yes"),
    ];
    let reply = open.submit(&app, "tools", "edit", &fields).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let row = text_rows(
        app.db.conn(),
        &format!("SELECT input_schema::text, tags::text, is_enabled::text FROM tools WHERE id = '{TOOL_ID}'"),
    )
    .await;
    assert_eq!(
        row[0],
        [
            Some("{\"type\": \"object\"}".into()),
            Some("{search,code}".into()),
            Some("false".into())
        ]
    );
}

#[tokio::test]
async fn an_edit_a_constraint_rejects_names_the_constraint_and_changes_nothing() {
    let app = App::start(true).await;
    let open = OpenForm::open(&app, "organizations", "edit", &[("id", ORG_ID)]).await;
    let reply = open
        .submit(
            &app,
            "organizations",
            "edit",
            &[("set.slug", "other"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply
            .body
            .contains("Rejected by unique constraint uq_organizations_slug"),
        "{}",
        reply.body
    );

    let open = OpenForm::open(
        &app,
        "agent_runs",
        "edit",
        &[("organization_id", ORG_ID), ("id", AGENT_RUN_ID)],
    )
    .await;
    for (column, value, status, message) in [
        (
            "set.status",
            "exploded",
            StatusCode::CONFLICT,
            "Rejected by check constraint ck_agent_runs_status on agent_runs.",
        ),
        (
            "set.prompt_tokens",
            "many",
            StatusCode::BAD_REQUEST,
            "Invalid value: invalid input syntax for type integer: \"many\".",
        ),
        (
            "set.slack_event_id",
            "00000000-0000-4000-8000-0000000000ee",
            StatusCode::CONFLICT,
            "Rejected by foreign key fk_agent_runs_slack_event_id: the referenced row does not exist.",
        ),
        (
            "set.organization_id",
            "org_nowhere",
            StatusCode::BAD_REQUEST,
            "agent_runs.organization_id cannot be edited here",
        ),
    ] {
        let reply = open
            .submit(
                &app,
                "agent_runs",
                "edit",
                &[(column, value), ("confirm", "yes")],
            )
            .await;
        assert_eq!(reply.status, status, "{column}: {}", reply.body);
        assert!(
            unescape(&reply.body).contains(message),
            "{column}: {}",
            reply.body
        );
    }
    let run = text_rows(
        app.db.conn(),
        &format!("SELECT status, prompt_tokens::text, organization_id, slack_event_id::text FROM agent_runs WHERE id = '{AGENT_RUN_ID}'"),
    )
    .await;
    assert_eq!(
        run[0],
        [
            Some("queued".into()),
            Some("0".into()),
            Some(ORG_ID.into()),
            Some(SLACK_EVENT_ID.into())
        ]
    );
    assert_eq!(organization_name(&app).await, "Acme");
}

#[tokio::test]
async fn an_edit_of_a_row_changed_meanwhile_is_refused() {
    let app = App::start(true).await;
    let open = OpenForm::open(&app, "organizations", "edit", &[("id", ORG_ID)]).await;
    app.db
        .conn()
        .execute_unprepared(&format!(
            "UPDATE organizations SET logo = 'new.png' WHERE id = '{ORG_ID}'"
        ))
        .await
        .unwrap();
    for fields in [
        &[("set.name", "Mine")][..],
        &[("set.name", "Mine"), ("confirm", "yes")],
    ] {
        let reply = open.submit(&app, "organizations", "edit", fields).await;
        assert_eq!(reply.status, StatusCode::CONFLICT);
        assert!(
            reply.body.contains("changed since you opened it"),
            "{}",
            reply.body
        );
    }
    assert_eq!(organization_name(&app).await, "Acme");
}

#[tokio::test]
async fn write_forms_need_the_token_and_cannot_touch_secrets_or_keys() {
    let app = App::start(true).await;
    let open = OpenForm::open(&app, "accounts", "edit", &[("id", "acct_owner")]).await;
    let change = [("set.scope", "x"), ("confirm", "yes")];
    for token in ["", "0000"] {
        let forged = OpenForm {
            token: token.to_owned(),
            ..open.clone()
        };
        let reply = forged.submit(&app, "accounts", "edit", &change).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "token `{token}`");
        let reply = forged.submit(&app, "accounts", "delete", &[]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "token `{token}`");
    }
    for field in ["set.password", "set.id", "set.nope"] {
        let reply = open
            .submit(
                &app,
                "accounts",
                "edit",
                &[(field, "x"), ("confirm", "yes")],
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field}");
        assert!(reply.body.contains("cannot be edited here"), "{field}");
    }
    let left = scalar(
        app.db.conn(),
        "SELECT count(*) FROM accounts WHERE password = 'scrypt:hash' AND scope IS NULL",
    )
    .await;
    assert_eq!(left, 1);
}

#[tokio::test]
async fn a_delete_shows_what_cascades_then_deletes_in_one_transaction() {
    let app = App::start(true).await;
    let confirm = app
        .page(&format!("/tables/organizations/row/delete?id={ORG_ID}"))
        .await;
    let members = between(&confirm, "data-fk=\"fk_members_organization_id\"", "</li>");
    assert!(
        members.contains("2 rows of") && members.contains("deleted too"),
        "{members}"
    );
    let sessions = between(
        &confirm,
        "data-fk=\"fk_sessions_active_organization_id\"",
        "</li>",
    );
    assert!(
        sessions.contains("active_organization_id will be set to NULL"),
        "{sessions}"
    );
    assert_eq!(
        scalar(app.db.conn(), "SELECT count(*) FROM organizations").await,
        2
    );

    let open = OpenForm::open(&app, "organizations", "delete", &[("id", ORG_ID)]).await;
    let reply = open.submit(&app, "organizations", "delete", &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(
        reply.location.as_deref(),
        Some("/tables/organizations?notice=deleted")
    );
    let db = app.db.conn();
    let count = |sql: String| async move { scalar(db, &sql).await };
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM organizations WHERE id = '{ORG_ID}'"
        ))
        .await,
        0
    );
    assert_eq!(
        count(format!(
            "SELECT count(*) FROM members WHERE organization_id = '{ORG_ID}'"
        ))
        .await,
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM sessions WHERE active_organization_id IS NULL".into()).await,
        2
    );
    // Again: the row is gone.
    let reply = open.submit(&app, "organizations", "delete", &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_delete_a_foreign_key_refuses_names_it_and_keeps_the_row() {
    let app = App::start(true).await;
    app.db
        .conn()
        .execute_unprepared(
            "ALTER TABLE members DROP CONSTRAINT fk_members_user_id,
             ADD CONSTRAINT fk_members_user_id FOREIGN KEY (user_id) REFERENCES users (id)",
        )
        .await
        .unwrap();
    // The studio read its catalog before the ALTER; the confirmation still opens.
    let open = OpenForm::open(&app, "users", "delete", &[("id", OWNER_ID)]).await;
    let reply = open.submit(&app, "users", "delete", &[]).await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    assert!(
        reply.body.contains(
            "Rejected by foreign key fk_members_user_id: rows of members still reference this row."
        ),
        "{}",
        reply.body
    );
    assert_eq!(
        scalar(
            app.db.conn(),
            &format!("SELECT count(*) FROM users WHERE id = '{OWNER_ID}'")
        )
        .await,
        1
    );
    assert_eq!(
        scalar(app.db.conn(), "SELECT count(*) FROM sessions").await,
        2,
        "no cascade ran"
    );
    // After the index page reloads the catalog, the confirmation warns before trying.
    app.page("/").await;
    let confirm = app
        .page(&format!("/tables/users/row/delete?id={OWNER_ID}"))
        .await;
    assert!(confirm.contains("PostgreSQL will refuse the delete while they exist."));
}

#[tokio::test]
async fn large_tables_show_the_planners_estimate_instead_of_counting() {
    let app = App::start(false).await;
    app.db
        .conn()
        .execute_unprepared("UPDATE pg_class SET reltuples = 250000 WHERE relname = 'slack_events'")
        .await
        .unwrap();
    let page = app.page("/").await;
    let row = between(&page, "data-table=\"slack_events\"", "</tr>");
    assert!(row.contains("≈250000"), "{row}");
    let row = between(&page, "data-table=\"linear_events\"", "</tr>");
    assert!(row.contains("<span class=\"rows\">1</span>"), "{row}");
}

#[tokio::test]
async fn lists_cut_large_json_and_the_row_page_shows_all_of_it() {
    let app = App::start(false).await;
    app.db
        .conn()
        .execute_unprepared(&format!(
            "UPDATE slack_events SET payload = jsonb_build_object('text', repeat('x', 20000), 'the_last_key', 'END-OF-PAYLOAD')
             WHERE id = '{SLACK_EVENT_ID}'"
        ))
        .await
        .unwrap();
    let list = app.page("/tables/slack_events").await;
    assert!(!list.contains("END-OF-PAYLOAD"));
    assert!(list.contains("KiB: the row's page shows all of it"));
    let row = app
        .page(&format!(
            "/tables/slack_events/row?organization_id={ORG_ID}&id={SLACK_EVENT_ID}"
        ))
        .await;
    assert!(row.contains("END-OF-PAYLOAD"));
}

#[tokio::test]
async fn an_untouched_multi_line_value_is_not_rewritten_with_the_browsers_line_breaks() {
    let app = App::start(true).await;
    app.db
        .conn()
        .execute_unprepared(&format!(
            "UPDATE organizations SET metadata = E'line one\\nline two' WHERE id = '{ORG_ID}'"
        ))
        .await
        .unwrap();
    let open = OpenForm::open(&app, "organizations", "edit", &[("id", ORG_ID)]).await;
    let fields = [("set.metadata", "line one\r\nline two"), ("confirm", "yes")];
    let reply = open.submit(&app, "organizations", "edit", &fields).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("Nothing changed"), "{}", reply.body);
    let stored = scalar(
        app.db.conn(),
        &format!("SELECT count(*) FROM organizations WHERE metadata = E'line one\\nline two' AND id = '{ORG_ID}'"),
    )
    .await;
    assert_eq!(stored, 1);
}

/// Better Auth keeps a password reset as `identifier = 'reset-password:<token>'`: whoever reads
/// the token can set the user's password. The studio shows what the row is for and nothing
/// after the first `:`, in lists, on the row's page and in its edit form, and refuses to
/// filter or sort by it.
#[tokio::test]
async fn a_reset_token_in_a_verification_identifier_is_never_shown() {
    let app = App::start(true).await;
    app.db
        .conn()
        .execute_unprepared(&format!(
            "INSERT INTO verifications (id, identifier, value, expires_at) VALUES
             ('reset', 'reset-password:RESETTOKEN9d2c', '{OWNER_ID}', now() + interval '1 h')"
        ))
        .await
        .unwrap();
    let pages = [
        app.page("/tables/verifications").await,
        app.page("/tables/verifications/row?id=reset").await,
        app.page("/tables/verifications/row/edit?id=reset").await,
        app.page("/tables/verifications/row/delete?id=reset").await,
    ];
    for page in &pages {
        assert!(!page.contains("RESETTOKEN9d2c"), "{page}");
    }
    let row = between(&pages[1], "data-column=\"identifier\"", "</tr>");
    assert!(
        row.contains("class=\"masked\"") && row.contains("reset-password:"),
        "{row}"
    );
    for uri in [
        "/tables/verifications?eq.identifier=reset-password:RESETTOKEN9d2c",
        "/tables/verifications?sort=identifier",
        "/tables/verifications/row?identifier=reset-password:RESETTOKEN9d2c",
    ] {
        assert_eq!(app.get(uri).await.status, StatusCode::BAD_REQUEST, "{uri}");
    }
}

/// Tokens inside JSON (Slack's envelope `token`, a tool's `api_key`, an `Authorization`
/// header a run recorded, a token under any key) are redacted at any depth on every page; the
/// edit form shows such a value redacted and refuses to save it (that would overwrite the
/// secret with the mask); a filter naming a secret key is refused (it would confirm a guess).
#[tokio::test]
async fn secrets_inside_json_are_redacted_on_every_page() {
    let app = App::start(true).await;
    let updates = [
        format!(
            r#"UPDATE slack_events SET payload = '{{"token": "JSONSECRETslack", "team_id": "T1",
               "event": {{"type": "message", "text": "hi"}}}}' WHERE id = '{SLACK_EVENT_ID}'"#
        ),
        format!(
            r#"UPDATE user_tools SET config = '{{"api_key": "JSONSECRETtool",
               "nested": [{{"clientSecret": "JSONSECRETclient"}}]}}' WHERE id = '{USER_TOOL_ID}'"#
        ),
        format!(
            r#"UPDATE agent_runs SET input = '{{"headers": {{"Authorization": "Bearer JSONSECRETauth"}}}}',
               output = '{{"deep": {{"deeper": {{"refresh_token": "JSONSECRETrefresh"}}}}}}'
               WHERE id = '{AGENT_RUN_ID}'"#
        ),
        format!(
            r#"UPDATE tool_calls SET input = '{{"args": ["xoxb-JSONSECRETbot"]}}',
               output = '{{"password": "JSONSECRETpassword"}}' WHERE id = '{TOOL_CALL_ID}'"#
        ),
    ];
    for update in updates {
        app.db.conn().execute_unprepared(&update).await.unwrap();
    }
    let mut pages = Vec::new();
    let in_org = |id: &str| format!("organization_id={ORG_ID}&id={id}");
    for (table, key) in [
        ("slack_events", in_org(SLACK_EVENT_ID)),
        ("user_tools", format!("id={USER_TOOL_ID}")),
        ("agent_runs", in_org(AGENT_RUN_ID)),
        ("tool_calls", in_org(TOOL_CALL_ID)),
    ] {
        pages.push(app.page(&format!("/tables/{table}")).await);
        for page in ["", "/edit", "/delete"] {
            pages.push(app.page(&format!("/tables/{table}/row{page}?{key}")).await);
        }
    }
    for page in &pages {
        assert!(
            !page.contains("JSONSECRET"),
            "a secret inside JSON is shown:\n{page}"
        );
    }
    // A NULL JSON value is NULL in a list too, not the wrapper a list fetches JSON in.
    app.db
        .conn()
        .execute_unprepared(&format!(
            "UPDATE tool_calls SET output = NULL WHERE id = '{TOOL_CALL_ID}'"
        ))
        .await
        .unwrap();
    let list = app.page("/tables/tool_calls").await;
    assert!(
        !list.contains("bytes") && list.contains("class=\"null\""),
        "{list}"
    );
    // A value shaped like that wrapper is shown as it is, on both pages.
    app.db
        .conn()
        .execute_unprepared(&format!(
            r#"UPDATE linear_events SET payload = '{{"bytes": 5}}' WHERE id = '{LINEAR_EVENT_ID}'"#
        ))
        .await
        .unwrap();
    for uri in [
        "/tables/linear_events".to_owned(),
        format!("/tables/linear_events/row?organization_id={ORG_ID}&id={LINEAR_EVENT_ID}"),
    ] {
        let page = unescape(&app.page(&uri).await);
        assert!(
            page.contains(r#"{"bytes":5}"#) && !page.contains("KiB"),
            "{uri}: {page}"
        );
    }
    let row = app
        .page(&format!(
            "/tables/slack_events/row?organization_id={ORG_ID}&id={SLACK_EVENT_ID}"
        ))
        .await;
    let payload = unescape(between(&row, "data-column=\"payload\"", "</tr>"));
    assert!(
        payload.contains(r#""token": "[redacted]""#) && payload.contains(r#""team_id": "T1""#),
        "{payload}"
    );

    let open = OpenForm::open(
        &app,
        "slack_events",
        "edit",
        &[("organization_id", ORG_ID), ("id", SLACK_EVENT_ID)],
    )
    .await;
    let reply = open
        .submit(
            &app,
            "slack_events",
            "edit",
            &[
                ("set.payload", r#"{"token": "[redacted]"}"#),
                ("confirm", "yes"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(
        reply.body.contains("holds a secret key or token"),
        "{}",
        reply.body
    );
    let kept = scalar(
        app.db.conn(),
        "SELECT count(*) FROM slack_events WHERE payload->>'token' = 'JSONSECRETslack'",
    )
    .await;
    assert_eq!(kept, 1);

    let guess = r#"{"token": "JSONSECRETslack", "team_id": "T1", "event": {"type": "message", "text": "hi"}}"#;
    let reply = app
        .get(&format!(
            "/tables/slack_events?eq.payload={}",
            url::form_urlencoded::byte_serialize(guess.as_bytes()).collect::<String>()
        ))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(
        reply.body.contains("cannot name a secret key"),
        "{}",
        reply.body
    );
}

/// A studio listening beyond loopback still answers only to its own names: its loopback
/// names, the address it listens on, and each `--allowed-host`.
#[tokio::test]
async fn a_studio_beyond_loopback_answers_only_to_its_allowed_hosts() {
    let app = App::start_with(
        false,
        studio::DEFAULT_STATEMENT_TIMEOUT,
        "0.0.0.0:4983",
        &["studio.internal".to_owned()],
    )
    .await;
    let get = |host: &'static str| {
        axum::http::Request::get("/")
            .header("host", host)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    for host in [
        "attacker.example:4983",
        "studio.internal.attacker.example:4983",
        "",
    ] {
        let reply = app.send(get(host)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "host `{host}`");
    }
    for host in [
        "studio.internal:4983",
        "STUDIO.internal:4983",
        "127.0.0.1:4983",
    ] {
        let reply = app.send(get(host)).await;
        assert_eq!(reply.status, StatusCode::OK, "host `{host}`");
    }
}

/// A POST counts only when a browser sent it from one of the studio's own pages: another
/// `Origin`, `Origin: null`, a cross-site `Sec-Fetch-Site` or neither header is refused before
/// the form is read, even with the right form token.
#[tokio::test]
async fn a_post_from_another_origin_is_refused_even_with_the_token() {
    let app = App::start(true).await;
    let open = OpenForm::open(&app, "organizations", "edit", &[("id", ORG_ID)]).await;
    let form = [
        ("token", open.token.as_str()),
        ("version", open.version.as_str()),
        ("key.id", ORG_ID),
        ("set.name", "Hacked"),
        ("confirm", "yes"),
    ];
    let uri = "/tables/organizations/row/edit";
    for headers in [
        vec![("origin", "http://attacker.example")],
        vec![("origin", "http://127.0.0.1:4983.attacker.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![],
    ] {
        let reply = app.post_with(uri, &form, &headers).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    assert_eq!(organization_name(&app).await, "Acme");
    let reply = app
        .post_with(uri, &form, &[("sec-fetch-site", "same-origin")])
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(organization_name(&app).await, "Hacked");
}

/// A statement that runs past the studio's `statement_timeout` (here: one waiting for a lock
/// another session holds) is cancelled by PostgreSQL and the page says so, instead of hanging.
#[tokio::test]
async fn a_query_past_the_statement_timeout_ends_as_a_page_that_says_so() {
    let app = App::start_with(
        false,
        std::time::Duration::from_millis(300),
        common::HOST,
        &[],
    )
    .await;
    let locker = app.db.new_pool(1).await;
    let txn = locker.begin().await.unwrap();
    txn.execute_unprepared("LOCK TABLE organizations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Without the timeout the page would wait for the lock for as long as it is held.
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        app.get("/tables/organizations"),
    )
    .await
    .expect("the page hung instead of timing out");
    txn.rollback().await.unwrap();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.body);
    assert!(reply.body.contains("statement timeout"), "{}", reply.body);
    assert_eq!(
        app.get("/tables/organizations").await.status,
        StatusCode::OK
    );
}

/// A table PostgreSQL never analysed (`reltuples = -1`) may be of any size: the index counts
/// it only when its heap is small, and otherwise shows it unknown rather than running a
/// `count(*)` over it.
#[tokio::test]
async fn a_never_analysed_large_table_is_not_counted() {
    let app = App::start(false).await;
    app.db
        .conn()
        .execute_unprepared(
            "CREATE TABLE never_analysed WITH (autovacuum_enabled = false) AS
             SELECT g AS id, repeat('x', 1000) AS pad FROM generate_series(1, 9000) AS g;
             CREATE TABLE small_never_analysed (id int PRIMARY KEY);
             INSERT INTO small_never_analysed VALUES (1), (2)",
        )
        .await
        .unwrap();
    let estimate = scalar(
        app.db.conn(),
        "SELECT count(*) FROM pg_class WHERE relname = 'never_analysed' AND reltuples < 0 \
         AND pg_relation_size(oid) > 8 * 1024 * 1024",
    )
    .await;
    assert_eq!(estimate, 1, "the table must be large and never analysed");
    let page = app.page("/").await;
    let row = between(&page, "data-table=\"never_analysed\"", "</tr>");
    assert!(
        row.contains("class=\"rows unknown\"") && !row.contains("9000"),
        "{row}"
    );
    let row = between(&page, "data-table=\"small_never_analysed\"", "</tr>");
    assert!(row.contains("<span class=\"rows\">2</span>"), "{row}");
}
