//! End to end: the real `studio` binary on a database filled by the workspace's seed (`small`),
//! driven by headless Chromium through WebDriver (Debian's `chromium` and `chromium-driver`,
//! which `.ci/run` installs). A person's path: the table list, an organization, its members;
//! an agent run, its tool calls; the ERD drawn by Mermaid. Screenshots go to
//! `target/studio-e2e/`.

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use harness::{TestDb, text_rows};
use hyper_util::client::legacy::connect::HttpConnector;
use secrecy::ExposeSecret;
use seed::{Scale, SeedOptions, Silent};
use serde_json::json;

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn program(env: &str, names: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{} not found (set {env}); install the prerequisites: `{}`",
                names.join(" or "),
                dev_servers::INSTALL_PREREQUISITES
            )
        })
}

/// The studio binary on a free port over `db`; returns it and its address.
fn start_studio(db: &TestDb) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_studio"))
        .args(["--port", "0"])
        // Through the environment, so the password is in no process listing.
        .env("DATABASE_URL", db.url().expose().expose_secret())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the studio binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in the studio's first line: {line}"))
        .trim_end_matches('/')
        .to_owned();
    assert!(address.starts_with("http://127.0.0.1:"), "{line}");
    assert!(
        line.contains("read-only") && line.contains("****"),
        "{line}"
    );
    (Running(child), address)
}

fn start_driver() -> (Running, String) {
    let port = dev_servers::free_port().unwrap();
    let child = Command::new(program("CHROMEDRIVER", &["chromedriver"]))
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Running(child), format!("http://127.0.0.1:{port}"))
}

async fn browser(driver: &str, profile: &Path) -> Client {
    let chromium = program("CHROME", &["chromium", "chromium-browser", "google-chrome"]);
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-extensions",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver)
        .await
        .expect("a Chromium session")
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/studio-e2e");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.unwrap();
    let path = screenshots_dir().join(name);
    std::fs::write(&path, &png).unwrap();
    let written = std::fs::read(&path).unwrap();
    assert!(
        written.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is no PNG",
        path.display()
    );
    assert!(written.len() > 10_000, "{} is nearly empty", path.display());
    path
}

/// Clicks the element `css` and waits for the page that has `then`.
async fn click(client: &Client, css: &str, then: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
        .click()
        .await
        .unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(then))
        .await
        .unwrap_or_else(|e| panic!("`{then}` never appeared after clicking `{css}`: {e}"));
}

async fn texts(client: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for element in client.find_all(Locator::Css(css)).await.unwrap() {
        out.push(element.text().await.unwrap());
    }
    out
}

/// The single text column `sql` returns, row by row.
async fn column(db: &TestDb, sql: &str) -> Vec<String> {
    text_rows(db.conn(), sql)
        .await
        .into_iter()
        .map(|row| row[0].clone().expect("not null"))
        .collect()
}

/// A row page lists up to this many rows of each table that references the row.
const REFERENCING_SHOWN: usize = 10;

#[tokio::test]
async fn a_person_clicks_from_an_organization_to_its_members_and_from_a_run_to_its_tool_calls() {
    let db = TestDb::migrated().await;
    let seeded = seed::seed_database(
        db.url(),
        &SeedOptions::new(1, Scale::Small.sizes()),
        &Silent,
    )
    .await
    .unwrap();
    let org = &seeded.demo_organization_id;
    let mut member_ids = column(
        &db,
        &format!("SELECT id FROM members WHERE organization_id = '{org}' ORDER BY id"),
    )
    .await;
    member_ids.truncate(REFERENCING_SHOWN);
    member_ids.sort();
    // The newest run with tool calls: on the first page of runs, newest first.
    let newest = text_rows(
        db.conn(),
        "SELECT organization_id, id::text FROM agent_runs WHERE next_tool_call_sequence > 0
         ORDER BY created_at DESC, organization_id DESC, id DESC LIMIT 1",
    )
    .await
    .remove(0);
    let [run_org, run] = [0, 1].map(|i| newest[i].clone().unwrap());
    let mut call_ids = column(
        &db,
        &format!(
            "SELECT id::text FROM tool_calls WHERE organization_id = '{run_org}'
             AND agent_run_id = '{run}' ORDER BY id"
        ),
    )
    .await;
    call_ids.truncate(REFERENCING_SHOWN);
    let (_studio, address) = start_studio(&db);
    let (_driver, driver_url) = start_driver();
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver_url, profile.path()).await;

    client.goto(&format!("{address}/")).await.unwrap();
    assert_eq!(client.title().await.unwrap(), "Tables · studio");

    // Organization -> its members -> one member -> the user.
    click(&client, "a[href='/tables/organizations']", "table.grid").await;
    click(
        &client,
        &format!("a.open[href='/tables/organizations/row?id={org}']"),
        "table.record",
    )
    .await;
    let members = "section[data-fk='fk_members_organization_id']";
    let mut shown = texts(&client, &format!("{members} tbody tr td:nth-child(2)")).await;
    shown.sort();
    assert_eq!(shown, member_ids);
    let member = &member_ids[0];
    let expected = text_rows(
        db.conn(),
        &format!(
            "SELECT m.role, u.id, u.email FROM members m JOIN users u ON u.id = m.user_id
             WHERE m.id = '{member}'"
        ),
    )
    .await
    .remove(0);
    let [role, user, email] = [0, 1, 2].map(|i| expected[i].clone().unwrap());
    click(
        &client,
        &format!("{members} a.open[href='/tables/members/row?organization_id={org}&id={member}']"),
        "tr[data-column='role']",
    )
    .await;
    assert_eq!(texts(&client, "tr[data-column='role'] td").await, [role]);
    click(
        &client,
        &format!("tr[data-column='user_id'] a[href='/tables/users/row?id={user}']"),
        "tr[data-column='email']",
    )
    .await;
    assert_eq!(texts(&client, "tr[data-column='email'] td").await, [email]);

    // Agent run -> its tool calls -> one tool call.
    click(&client, "header a[href='/']", "section.domain").await;
    click(&client, "a[href='/tables/agent_runs']", "table.grid").await;
    click(
        &client,
        &format!("a.open[href='/tables/agent_runs/row?organization_id={run_org}&id={run}']"),
        "section[data-fk='fk_tool_calls_agent_run_id']",
    )
    .await;
    let calls = "section[data-fk='fk_tool_calls_agent_run_id']";
    assert_eq!(
        texts(&client, &format!("{calls} tbody tr td:nth-child(2)")).await,
        call_ids
    );
    // Tall enough for the whole run and its tool calls in one picture.
    client.set_window_size(1400, 1500).await.unwrap();
    let run_page = screenshot(&client, "agent-run-with-tool-calls.png").await;
    client.set_window_size(1400, 1000).await.unwrap();
    let call = &call_ids[0];
    let tool_name = column(
        &db,
        &format!("SELECT tool_name FROM tool_calls WHERE id = '{call}'"),
    )
    .await;
    click(
        &client,
        &format!(
            "{calls} a.open[href='/tables/tool_calls/row?organization_id={run_org}&id={call}']"
        ),
        "tr[data-column='tool_name']",
    )
    .await;
    assert_eq!(
        texts(&client, "tr[data-column='tool_name'] td").await,
        tool_name
    );

    // The ERD, drawn by the vendored Mermaid into an SVG.
    click(&client, "header a[href='/erd']", "pre.mermaid").await;
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("body[data-erd='rendered'] pre.mermaid svg"))
        .await
        .unwrap_or_else(|_| {
            panic!("the ERD was not drawn");
        });
    let labels = texts(
        &client,
        "pre.mermaid svg .entityLabel, pre.mermaid svg .nodeLabel",
    )
    .await;
    assert!(
        labels.iter().any(|l| l.contains("tool_calls"))
            && labels.iter().any(|l| l.contains("organizations")),
        "entity names missing from the SVG: {labels:?}"
    );
    let erd = screenshot(&client, "erd.png").await;
    client.close().await.unwrap();
    println!("screenshots: {} {}", run_page.display(), erd.display());
}
