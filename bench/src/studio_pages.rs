//! The studio's table page at the largest size: the first page, a page half-way down the table
//! reached by its keyset cursor, and, as the baseline, the same half-way rows fetched the way an
//! OFFSET-paging browser would.

use anyhow::{Result, ensure};
use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use db_connect::DatabaseUrl;
use http_body_util::BodyExt;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use studio::{Options, Studio, allowed_hosts};
use tower::ServiceExt;

use crate::stats::{Samples, timed};

pub struct StudioPages {
    pub rows: usize,
    pub first: Samples,
    pub deep: Samples,
    pub offset: Samples,
}

/// The columns and order of the studio's page (the sort column, then the primary key
/// `(organization_id, id)`), with OFFSET instead of a cursor.
fn offset_sql(rows: usize) -> String {
    format!(
        "SELECT * FROM slack_events
         ORDER BY created_at DESC NULLS FIRST, organization_id DESC, id DESC OFFSET {} LIMIT 51",
        rows / 2
    )
}

pub async fn measure(
    db: &DatabaseConnection,
    url: &DatabaseUrl,
    rows: usize,
    iterations: usize,
) -> Result<StudioPages> {
    let pool = db_connect::connect(url, &Default::default()).await?;
    // Requests go to the router itself, addressed as a studio on its default port would be.
    const HOST: &str = "127.0.0.1:4983";
    let options = Options {
        allowed_hosts: allowed_hosts(HOST.parse()?, &[]),
        ..Options::default()
    };
    let router = Studio::new(pool, options).await?.router();
    let middle = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT created_at::text, organization_id, id::text FROM slack_events
                 ORDER BY created_at DESC, organization_id DESC, id DESC OFFSET {} LIMIT 1",
                rows / 2
            ),
        ))
        .await?
        .expect("the scale step filled the table");
    // The studio's cursor: the sort value, then the primary key's values.
    let cursor = serde_json::to_string(&[
        middle.try_get_by_index::<String>(0)?,
        middle.try_get_by_index::<String>(1)?,
        middle.try_get_by_index::<String>(2)?,
    ])?;
    let deep_uri = format!(
        "/tables/slack_events?sort=created_at&dir=desc&{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("after", &cursor)
            .finish()
    );
    let first_uri = "/tables/slack_events?sort=created_at&dir=desc";
    let get = |uri: String| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(
                    Request::get(uri)
                        .header(header::HOST, HOST)
                        .body(Body::empty())?,
                )
                .await?;
            ensure!(
                response.status() == StatusCode::OK,
                "studio answered {}",
                response.status()
            );
            let page = response.into_body().collect().await?.to_bytes();
            ensure!(
                page.len() > 10_000,
                "a page of rows is more than {} bytes",
                page.len()
            );
            Ok(())
        }
    };
    let mut point = StudioPages {
        rows,
        first: Samples::default(),
        deep: Samples::default(),
        offset: Samples::default(),
    };
    let offset = offset_sql(rows);
    for _ in 0..iterations + 5 {
        timed(&mut point.first, get(first_uri.to_owned())).await?;
        timed(&mut point.deep, get(deep_uri.clone())).await?;
        timed(
            &mut point.offset,
            db.query_all_raw(Statement::from_string(DbBackend::Postgres, offset.clone())),
        )
        .await?;
    }
    for samples in [&mut point.first, &mut point.deep, &mut point.offset] {
        samples.skip_first(5);
    }
    Ok(point)
}
