//! Keyset pagination on `(created_at, id)`: stable under inserts, and as fast on page 1000 as on
//! page 1 because each page starts from an index position, not an offset.

use sea_orm::prelude::{DateTimeWithTimeZone, Uuid};
use serde::{Deserialize, Serialize};

/// Where a page ends: the `(created_at, id)` of its last row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    pub created_at: DateTimeWithTimeZone,
    pub id: Uuid,
}

/// Rows of one page, and the cursor of the next page if there is one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// Rows that keyset pagination can continue after.
pub trait HasCursor {
    fn cursor(&self) -> Cursor;
}

macro_rules! cursor_from_created_at_and_id {
    ($($row:ty),+) => {$(
        impl HasCursor for $row {
            fn cursor(&self) -> Cursor {
                Cursor { created_at: self.created_at, id: self.id }
            }
        }
    )+};
}

cursor_from_created_at_and_id!(entity::SlackEvent, entity::LinearEvent, entity::AgentRun);

impl<T: HasCursor> Page<T> {
    /// From `limit + 1` fetched rows: the extra row only says that another page exists.
    pub(crate) fn from_overfetch(mut rows: Vec<T>, limit: u64) -> Self {
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next = if more {
            rows.last().map(HasCursor::cursor)
        } else {
            None
        };
        Self { items: rows, next }
    }
}

/// The largest page any helper returns; larger requests are clamped.
pub const MAX_PAGE: u64 = 1000;

pub(crate) fn clamp_limit(limit: u64) -> u64 {
    limit.clamp(1, MAX_PAGE)
}
