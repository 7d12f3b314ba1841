//! Connecting writes no password into traces, even at TRACE with every span's fields recorded
//! (what an OpenTelemetry layer exports, or `RUST_LOG=trace` with span events).

use std::sync::{Arc, Mutex};

use db_connect::{Pool, PoolSettings, Pooler};
use harness::TestDb;
use sea_orm::ConnectionTrait;
use secrecy::ExposeSecret;
use tracing_subscriber::fmt::format::FmtSpan;

#[tokio::test]
async fn connecting_traces_no_password() {
    let captured = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let captured = Arc::clone(&captured);
        move || Captured(Arc::clone(&captured))
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::FULL)
        .with_ansi(false)
        .with_writer(writer)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let db = TestDb::migrated().await;
    // A callsite another test's thread began registering before this subscriber existed keeps
    // the interest it computed without it: computed again now, every span reaches it.
    tracing::callsite::rebuild_interest_cache();
    for url in [db.url(), db.direct_url()] {
        let pooler = match url.pooler_flag() {
            Some(true) => Pooler::Transaction,
            _ => Pooler::None,
        };
        let settings = PoolSettings::default();
        let pool = Pool::connect(url, pooler, &settings).await.unwrap();
        harness::scalar(&pool, "SELECT 1::bigint").await;
        pool.execute_unprepared("SELECT 1").await.unwrap();
        pool.close().await.unwrap();
        let lazy = Pool::connect_lazy(url, pooler, &settings).await.unwrap();
        harness::scalar(&lazy, "SELECT 1::bigint").await;
        lazy.close().await.unwrap();
        let plain = db_connect::connect(url, &settings).await.unwrap();
        plain.execute_unprepared("SELECT 1").await.unwrap();
        plain.close().await.unwrap();
    }
    drop(guard);
    let traces = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
    assert!(
        traces.contains("execute_unprepared"),
        "SeaORM's TRACE spans were recorded"
    );
    assert!(
        !traces.contains(db.url().password().expose_secret()),
        "the password is in the traces (not printed here)"
    );
}

struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
