use thiserror::Error;

/// Why seeding did not happen. Nothing was written in any case: the seed is one transaction.
#[derive(Debug, Error)]
pub enum SeedError {
    #[error(
        "the database already holds rows (in {}); seeding it would mix two data sets. \
         Run with --reset to empty the application and auth tables first \
         (the migration history is kept)",
        tables.join(", ")
    )]
    NotEmpty { tables: Vec<String> },

    #[error(
        "the schema is not migrated: table(s) {} missing; run `cargo run -p migration -- up` first",
        missing.join(", ")
    )]
    NotMigrated { missing: Vec<String> },

    #[error(
        "`{value}` is not a scale: expected small, medium, large or a number of events (e.g. 250000)"
    )]
    UnknownScale { value: String },

    #[error("the generator stopped unexpectedly: {0}")]
    Generator(String),

    /// The connection to seed through did not open: its cause and the URL, password masked.
    #[error(transparent)]
    Connect(#[from] db_connect::ConnectError),

    #[error("database error while seeding: {0}")]
    Database(#[from] sqlx::Error),
}
