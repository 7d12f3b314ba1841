//! The studio: the database in a browser, rendered on the server. Every page reads the live
//! catalog (`catalog::Catalog`), so it follows whatever schema the database has; nothing here
//! knows the tables except how to group them ([`domains`]) and which columns hold secrets
//! ([`secrets`]). Read-only unless started with `--write`.

mod assets;
mod browse;
pub mod domains;
mod error;
mod html;
mod keyset;
mod pages;
pub mod secrets;

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use catalog::{Catalog, CatalogError};
use sea_orm::DatabaseConnection;

pub use error::StudioError;

/// How the studio may be used.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Allow editing and deleting rows (each behind a confirmation).
    pub write: bool,
    /// The `Host` headers accepted, e.g. `127.0.0.1:4983`; `None` accepts any. A studio on
    /// loopback accepts only its own names, so a web page cannot reach it through a DNS name
    /// that resolves to 127.0.0.1 (DNS rebinding).
    pub allowed_hosts: Option<Vec<String>>,
}

pub struct Studio {
    db: DatabaseConnection,
    catalog: RwLock<Arc<Catalog>>,
    write: bool,
    allowed_hosts: Option<Vec<String>>,
    /// Sent with every form and required on every POST, so another site cannot submit one.
    form_token: String,
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
}

/// The names a studio bound to loopback `addr` answers to.
pub fn loopback_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ]
}

async fn guard(State(studio): State<Arc<Studio>>, request: Request, next: Next) -> Response {
    if let Some(allowed) = &studio.allowed_hosts {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(host)) {
            return StudioError::Forbidden(format!(
                "this studio answers only to {}; the request was for host `{host}`",
                allowed.join(", ")
            ))
            .into_response();
        }
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
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
