//! The studio: the database in a browser, rendered on the server. Every page reads the live
//! catalog (`catalog::Catalog`), so it follows whatever schema the database has; nothing here
//! knows the tables except how to group them ([`domains`]); which columns and JSON keys hold
//! secrets is `db_connect::secrets`' rule. Read-only unless started with `--write`.

mod assets;
mod browse;
pub mod domains;
mod error;
mod html;
mod keyset;
mod pages;

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use catalog::{Catalog, CatalogError};
use db_connect::{DatabaseUrl, PoolSettings};
use sea_orm::DatabaseConnection;
use subtle::ConstantTimeEq;

pub use error::StudioError;

/// How long one statement of the studio may run before PostgreSQL cancels it.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the studio may be used.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Allow editing and deleting rows (each behind a confirmation).
    pub write: bool,
    /// The `Host` headers accepted, e.g. `127.0.0.1:4983` (see [`allowed_hosts`]). Any other
    /// is refused, so a web page cannot reach the studio through a DNS name of its own that
    /// resolves to the studio's address (DNS rebinding). Empty refuses every request.
    pub allowed_hosts: Vec<String>,
}

pub struct Studio {
    db: DatabaseConnection,
    catalog: RwLock<Arc<Catalog>>,
    write: bool,
    allowed_hosts: Vec<String>,
    /// Sent with every form and required on every POST, so another site cannot submit one.
    form_token: String,
}

/// The studio's pool: `settings`, and every statement cancelled by PostgreSQL after
/// `statement_timeout`, so a slow query ends as a page that says so instead of a hang. Its
/// first connection opens now: a wrong URL fails here, naming the cause.
pub async fn connect(
    url: &DatabaseUrl,
    settings: &PoolSettings,
    statement_timeout: Duration,
) -> Result<DatabaseConnection, db_connect::ConnectError> {
    let timeout_ms = statement_timeout.as_millis().to_string();
    let pool = db_connect::connect::pool_options(settings);
    let opening = db_connect::Opening::Now(settings.connect_timeout);
    db_connect::connect::open_pool(url, pool, opening, |options| {
        options.options([("statement_timeout", timeout_ms)])
    })
    .await
}

impl Studio {
    pub async fn new(db: DatabaseConnection, options: Options) -> Result<Arc<Self>, CatalogError> {
        let catalog = Catalog::load(&db).await?;
        Ok(Arc::new(Self {
            db,
            catalog: RwLock::new(Arc::new(catalog)),
            write: options.write,
            allowed_hosts: options.allowed_hosts,
            form_token: format!("{:032x}", rand::random::<u128>()),
        }))
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(pages::index::show))
            .route("/erd", get(pages::erd::show))
            .route("/tables/{table}", get(pages::table::show))
            .route("/tables/{table}/row", get(pages::row::show))
            .route(
                "/tables/{table}/row/edit",
                get(pages::write::edit_form).post(pages::write::edit_submit),
            )
            .route(
                "/tables/{table}/row/delete",
                get(pages::write::delete_confirm).post(pages::write::delete_submit),
            )
            .route("/assets/mermaid.min.js", get(assets::mermaid))
            .route("/assets/erd.js", get(assets::erd_js))
            .fallback(|| async { StudioError::NotFound("no such page".into()) })
            .layer(middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self.clone())
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// Reads the catalog again, so a migration run while the studio is open shows up.
    async fn reload_catalog(&self) -> Result<Arc<Catalog>, StudioError> {
        let fresh = Arc::new(Catalog::load(&self.db).await?);
        *self.catalog.write().expect("catalog lock") = fresh.clone();
        Ok(fresh)
    }

    /// Whether a submitted form token is this studio's, compared in constant time so the
    /// response time says nothing about how much of a guess was right.
    fn is_form_token(&self, submitted: Option<&str>) -> bool {
        let submitted = submitted.unwrap_or_default().as_bytes();
        bool::from(submitted.ct_eq(self.form_token.as_bytes()))
    }
}

/// The `Host` names a studio listening on `addr` answers to: its loopback names (a studio on
/// an unspecified address listens on loopback too), the address itself when it is a specific
/// one, and each of `extra` (`--allowed-host`, with this port unless it names one).
pub fn allowed_hosts(addr: SocketAddr, extra: &[String]) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
        hosts.push(addr.to_string());
    }
    for name in extra {
        let name = name.trim().to_ascii_lowercase();
        // `name`, `name:port`, `[v6]` or `[v6]:port`.
        let has_port = name.rsplit_once(':').is_some_and(|(host, p)| {
            p.parse::<u16>().is_ok() && (host.ends_with(']') || !host.contains(':'))
        });
        hosts.push(if has_port {
            name
        } else {
            format!("{name}:{port}")
        });
    }
    // A browser leaves the port out of `Host` when it is the scheme's default.
    if port == 80 {
        let bare: Vec<String> = hosts
            .iter()
            .filter_map(|h| h.strip_suffix(":80").map(str::to_owned))
            .collect();
        hosts.extend(bare);
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

fn is_allowed(studio: &Studio, host: &str) -> bool {
    studio
        .allowed_hosts
        .iter()
        .any(|a| a.eq_ignore_ascii_case(host))
}

/// Refuses a POST a browser did not send from one of the studio's own pages: its `Origin` must
/// be an allowed host (over http or https), or, when a client sends no `Origin`, its
/// `Sec-Fetch-Site` must be `same-origin`. With neither it is refused too.
fn check_post_origin(studio: &Studio, headers: &HeaderMap) -> Result<(), StudioError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = header("origin") {
        let host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if host.is_some_and(|h| is_allowed(studio, h)) {
            return Ok(());
        }
        return Err(StudioError::Forbidden(format!(
            "this form was sent from `{origin}`, not from the studio's own pages; nothing was changed"
        )));
    }
    if header("sec-fetch-site") == Some("same-origin") {
        return Ok(());
    }
    Err(StudioError::Forbidden(
        "a change must come from the studio's own pages (the request had no Origin or \
         Sec-Fetch-Site header); nothing was changed"
            .into(),
    ))
}

async fn guard(State(studio): State<Arc<Studio>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !is_allowed(&studio, host) {
        return StudioError::Forbidden(format!(
            "this studio answers only to {}; the request was for host `{host}` (start it with \
             --allowed-host NAME to add a name)",
            studio.allowed_hosts.join(", ")
        ))
        .into_response();
    }
    if request.method() == Method::POST
        && let Err(refused) = check_post_origin(&studio, request.headers())
    {
        return refused.into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null` with
    // every POST, even the studio's own, and the origin check above needs the real one.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::allowed_hosts;

    #[test]
    fn allowed_hosts_are_the_loopback_names_the_address_and_each_extra_name() {
        let on = |addr: &str, extra: &[&str]| {
            let extra: Vec<String> = extra.iter().map(|e| e.to_string()).collect();
            allowed_hosts(addr.parse().unwrap(), &extra)
        };
        assert_eq!(
            on("127.0.0.1:4983", &[]),
            ["127.0.0.1:4983", "[::1]:4983", "localhost:4983"]
        );
        assert_eq!(
            on("0.0.0.0:4983", &["Dev.Internal", "proxy:443", "[fd00::1]"]),
            [
                "127.0.0.1:4983",
                "[::1]:4983",
                "[fd00::1]:4983",
                "dev.internal:4983",
                "localhost:4983",
                "proxy:443"
            ]
        );
        assert!(on("192.168.1.5:4983", &[]).contains(&"192.168.1.5:4983".to_owned()));
        assert!(on("[fd00::2]:4983", &[]).contains(&"[fd00::2]:4983".to_owned()));
        let default_port = on("0.0.0.0:80", &["dev.internal"]);
        assert!(
            default_port.contains(&"dev.internal".to_owned()),
            "{default_port:?}"
        );
        assert!(
            default_port.contains(&"localhost".to_owned()),
            "{default_port:?}"
        );
    }
}
