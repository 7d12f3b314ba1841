//! A studio over a fresh seeded database, spoken to over HTTP without a socket (the router
//! itself), and the bits of HTML the tests read back.

#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Request, StatusCode, header},
};
use harness::{TestDb, fixtures::seed_everything};
use http_body_util::BodyExt;
use studio::{DEFAULT_STATEMENT_TIMEOUT, Options, Studio, allowed_hosts};
use tower::ServiceExt;

pub const HOST: &str = "127.0.0.1:4983";
/// What a browser sends as `Origin` from the studio's own pages.
pub const ORIGIN: &str = "http://127.0.0.1:4983";

pub struct App {
    pub db: TestDb,
    pub router: Router,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: String,
    pub location: Option<String>,
}

impl App {
    /// A seeded database and a studio over it, read-only unless `write`.
    pub async fn start(write: bool) -> Self {
        Self::start_with(write, DEFAULT_STATEMENT_TIMEOUT, HOST, &[]).await
    }

    /// As [`App::start`], with the studio's statement timeout, the address it listens on and
    /// its `--allowed-host` names.
    pub async fn start_with(
        write: bool,
        statement_timeout: Duration,
        listening: &str,
        extra_hosts: &[String],
    ) -> Self {
        let db = TestDb::migrated().await;
        seed_everything(db.conn()).await.unwrap();
        let settings = db_connect::PoolSettings {
            max_connections: 4,
            ..Default::default()
        };
        let pool = studio::connect(db.url(), &settings, statement_timeout)
            .await
            .unwrap();
        let studio = Studio::new(
            pool,
            Options {
                write,
                allowed_hosts: allowed_hosts(listening.parse::<SocketAddr>().unwrap(), extra_hosts),
            },
        )
        .await
        .unwrap();
        let router = studio.router();
        Self { db, router }
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
            location,
        }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send(
            Request::get(uri)
                .header(header::HOST, HOST)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// GET that must answer 200; returns the page.
    pub async fn page(&self, uri: &str) -> String {
        let reply = self.get(uri).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {uri}:\n{}", reply.body);
        reply.body
    }

    /// POST of `form` as a browser sends it from one of the studio's pages.
    pub async fn post(&self, uri: &str, form: &[(&str, &str)]) -> Reply {
        self.post_with(uri, form, &[("origin", ORIGIN)]).await
    }

    /// POST of `form` to `HOST` with `headers` (e.g. another `Origin`, or none).
    pub async fn post_with(
        &self,
        uri: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = Request::post(uri)
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }
}

/// HTML-unescapes what maud escapes.
pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `attr` of the first element whose opening tag contains `marker`.
pub fn attr(html: &str, marker: &str, attr: &str) -> Option<String> {
    let at = html.find(marker)?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let from = tag.find(&key)? + key.len();
    let to = from + tag[from..].find('"')?;
    Some(unescape(&tag[from..to]))
}

/// The primary keys of the rows a grid lists, in order (from their "open" links), each as the
/// `(column, value)` pairs of its link.
pub fn listed_keys(html: &str) -> Vec<Vec<(String, String)>> {
    html.split("<a class=\"open\" href=\"")
        .skip(1)
        .map(|rest| {
            let href = unescape(&rest[..rest.find('"').unwrap()]);
            let query = href.split_once('?').unwrap().1;
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .collect()
}

/// The last column of each listed row's primary key: its `id` (also for the tenant tables,
/// keyed `(organization_id, id)`).
pub fn listed_ids(html: &str) -> Vec<String> {
    listed_keys(html)
        .into_iter()
        .map(|mut key| key.pop().unwrap().1)
        .collect()
}

/// `(column, value)` pairs as a URL query.
pub fn query(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The text between `start` and the next `end` after it.
pub fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("`{start}` not in page"))
        + start.len();
    let to = from + html[from..].find(end).unwrap();
    &html[from..to]
}
