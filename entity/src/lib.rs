//! Typed rows of every table. The entities themselves are generated from the migrated schema
//! by `sea-orm-cli generate entity`; this crate re-exports SeaORM so callers need one import.

pub use sea_orm;
