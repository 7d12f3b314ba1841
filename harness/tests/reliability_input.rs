//! Bad input reaching the data layer: each is a clear typed error, nothing is written, nothing
//! panics, and no secret appears in any error or log line (all logs of this process are
//! captured at TRACE level and searched).

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use harness::{TestDb, fixtures, scalar};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use service::{
    DatabaseUrl, EncryptedToken, Error, PoolSettings, auth,
    events::{self, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, SlackDelivery, SlackEvents},
};

/// Everything every tracing event of this test process wrote.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Capture(sink.clone()))
            .init();
        logs
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn slack(event_id: &str, payload: Value) -> SlackDelivery {
    SlackDelivery {
        event_id: event_id.into(),
        event_type: "message".into(),
        team_id: "T1".into(),
        channel_id: None,
        slack_user_id: None,
        payload,
    }
}

/// `[[[...0...]]]`, `depth` levels, built without recursion (`json!` would copy recursively).
fn nested(depth: usize) -> Value {
    (1..depth).fold(json!(0), |inner, _| Value::Array(vec![inner]))
}

/// `{"a": {"a": ... 0 ...}}`, `depth` levels.
fn nested_objects(depth: usize) -> Value {
    (1..depth).fold(json!(0), |inner, _| json!({ "a": inner }))
}

#[tokio::test]
async fn oversized_deep_and_unstorable_payloads_are_refused_and_nothing_is_written() {
    let logs = captured_logs();
    let db = TestDb::migrated().await;
    fixtures::organization_with_teams(db.conn(), "org_input", "T1")
        .await
        .unwrap();
    let big = slack("Ev_big", json!({ "text": "x".repeat(MAX_PAYLOAD_BYTES) }));
    let err = events::ingest::<SlackEvents>(db.conn(), big)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Validation { field, reason } if field == "payload" && reason.contains("Ev_big")),
        "{err:?}"
    );
    let deep = slack("Ev_deep", nested(MAX_PAYLOAD_DEPTH + 1));
    let err = events::ingest::<SlackEvents>(db.conn(), deep)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("deeper than 128"), "{err}");
    let deep_objects = slack("Ev_deep_objects", nested_objects(MAX_PAYLOAD_DEPTH + 1));
    let err = events::ingest::<SlackEvents>(db.conn(), deep_objects)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("deeper than 128"), "{err}");
    // Built far deeper than any stack could recurse through: refused, not a crash. (Dropping
    // such a value recurses too, so it is leaked rather than dropped here.)
    let abyss = std::mem::ManuallyDrop::new(slack("Ev_abyss", nested(200_000)));
    let batch = std::slice::from_ref(&*abyss);
    assert!(matches!(
        events::ingest_batch::<SlackEvents>(db.conn(), batch).await,
        Err(Error::Validation { .. })
    ));
    // PostgreSQL cannot store \u0000 in jsonb text: a typed error from the database side.
    let nul = slack("Ev_nul", json!({ "text": "a\u{0}b" }));
    let err = events::ingest::<SlackEvents>(db.conn(), nul)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Validation { .. }), "{err:?}");
    // The limit itself is allowed: `{"text":"..."}` is 11 bytes around the text.
    let at_limit = slack(
        "Ev_at_limit",
        json!({ "text": "x".repeat(MAX_PAYLOAD_BYTES - 11) }),
    );
    events::ingest::<SlackEvents>(db.conn(), at_limit)
        .await
        .unwrap();
    // A large delivery that is no attack (Slack's and Linear's are far smaller) is stored.
    let large = slack("Ev_large", json!({ "text": "x".repeat(512 * 1024) }));
    events::ingest::<SlackEvents>(db.conn(), large)
        .await
        .unwrap();
    let fine = slack("Ev_fine", nested(MAX_PAYLOAD_DEPTH));
    events::ingest::<SlackEvents>(db.conn(), fine)
        .await
        .unwrap();
    let fine_objects = slack("Ev_fine_objects", nested_objects(MAX_PAYLOAD_DEPTH));
    events::ingest::<SlackEvents>(db.conn(), fine_objects)
        .await
        .unwrap();
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM slack_events").await,
        4,
        "only the valid ones"
    );
    drop(logs);
}

#[tokio::test]
async fn no_secret_reaches_an_error_or_a_log_line() {
    let logs = captured_logs();
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let mut shown = Vec::new();

    // A wrong password for a real server, and an unreachable server.
    let mut wrong = db.direct_url().clone();
    wrong = DatabaseUrl::new(
        wrong.user(),
        SecretString::from("wrong-pw-7f3a"),
        wrong.host(),
        wrong.port(),
        wrong.database(),
    )
    .unwrap();
    let quick = PoolSettings {
        connect_timeout: Duration::from_secs(1),
        acquire_timeout: Duration::from_secs(1),
        ..PoolSettings::default()
    };
    let err = service::connect_to(&wrong, &quick).await.unwrap_err();
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    shown.push(format!("{err} {err:?}"));
    // Malformed URLs carrying a password.
    for raw in [
        "postgresql://u:url-pw-19c2@h/db",
        "mysql://u:url-pw-19c2@h:1/db",
        "postgresql://u:url-pw-19c2@h:0/db",
    ] {
        let err = DatabaseUrl::parse(raw).unwrap_err();
        shown.push(format!("{err} {err:?}"));
    }
    // A parameter the driver would log with its value if it reached it.
    let err = DatabaseUrl::parse("postgresql://u:pw@h:5432/db?sslpassword=url-param-pw-61d0")
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));
    // Every supported parameter reaches the driver, which logs none of them as unknown.
    let all_parameters = DatabaseUrl::parse(&format!(
        "{}?sslmode=disable&application_name=reliability&statement-cache-capacity=50\
         &options=-c%20statement_timeout%3D5000&pgbouncer=false",
        db.direct_url().expose().expose_secret()
    ))
    .unwrap();
    let pool = service::connect_to(&all_parameters, &quick).await.unwrap();
    // The session asking is one of them; the pool may have opened another meanwhile.
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = 'reliability' AND pid = pg_backend_pid()"
        )
        .await,
        1,
        "application_name reached the server"
    );
    pool.close().await.unwrap();
    // A plaintext provider token refused, a session token used for lookups.
    let err = EncryptedToken::from_ciphertext("xoxb-plain-8d1e".into()).unwrap_err();
    shown.push(format!("{err} {err:?}"));
    let token = EncryptedToken::from_ciphertext("v1:cipher-31b4".into()).unwrap();
    shown.push(format!("{token:?}"));
    let found = auth::valid_session(db.conn(), "tok_owner").await.unwrap();
    shown.push(format!("{found:?}"));
    let err = auth::consume_verification(db.conn(), "owner@example.com", "verif-value-5e6f")
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));

    let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(!logged.contains("unrecognized"), "{logged}");
    for secret in [
        "url-param-pw-61d0",
        "wrong-pw-7f3a",
        "url-pw-19c2",
        "xoxb-plain-8d1e",
        "cipher-31b4",
        "tok_owner",
        "verif-value-5e6f",
        &db.url().password_str(),
    ] {
        for text in shown.iter().chain([&logged]) {
            assert!(!text.contains(secret), "`{secret}` appeared in: {text}");
        }
    }
    println!(
        "figure: {} errors and {} bytes of TRACE logs searched for 8 secrets: none found",
        shown.len(),
        logged.len()
    );
}

trait PasswordStr {
    fn password_str(&self) -> String;
}

impl PasswordStr for DatabaseUrl {
    fn password_str(&self) -> String {
        secrecy::ExposeSecret::expose_secret(self.password()).to_owned()
    }
}
