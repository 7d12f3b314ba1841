//! Collects the SQL each migration sends, from a real run: the runner announces each migration
//! under [`CAPTURE_TARGET`], and the driver logs every statement of the apply connection at
//! TRACE under `sqlx::query`. Both are caught by a subscriber set for the run's future only.

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use tracing::{
    Event, Level, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    Layer, Registry,
    filter::Targets,
    layer::{Context, SubscriberExt},
};

use crate::runner::CAPTURE_TARGET;

const DRIVER_TARGET: &str = "sqlx::query";

/// The statements of one migration, in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub migration: String,
    pub statements: Vec<String>,
}

#[derive(Default)]
struct State {
    migrations: Vec<Captured>,
    /// Whether a migration's `begin` was seen and not yet its `end`.
    open: bool,
}

/// What one event says, by field name.
#[derive(Default)]
struct Fields {
    message: String,
    migration: String,
    summary: String,
    statement: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "message" => &mut self.message,
            "migration" => &mut self.migration,
            "summary" => &mut self.summary,
            "db.statement" => &mut self.statement,
            _ => return,
        };
        *slot = value.to_owned();
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<State>>);

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match event.metadata().target() {
            CAPTURE_TARGET if fields.message == "begin" => {
                state.migrations.push(Captured {
                    migration: fields.migration,
                    statements: Vec::new(),
                });
                state.open = true;
            }
            CAPTURE_TARGET => state.open = false,
            DRIVER_TARGET if state.open => {
                // The driver gives a long statement apart from its summary, framed by newlines.
                let sql = match fields.statement.trim() {
                    "" => fields.summary,
                    full => full.to_owned(),
                };
                if let Some(current) = state.migrations.last_mut() {
                    current.statements.push(sql);
                }
            }
            _ => {}
        }
    }
}

impl Recorder {
    /// A dispatcher that feeds this recorder, and nothing else.
    pub fn dispatch(&self) -> tracing::Dispatch {
        let targets = Targets::new()
            .with_target(CAPTURE_TARGET, Level::TRACE)
            .with_target(DRIVER_TARGET, Level::TRACE);
        tracing::Dispatch::new(Registry::default().with(self.clone().with_filter(targets)))
    }

    pub fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()).migrations)
    }
}
