//! The entity crate in one page: insert a `NewUser`, read it back as a `User`, print it as
//! camelCase JSON, and filter agent runs by `AgentRunStatus`.
//!
//! ```sh
//! cargo run -p migration -- up          # once: the schema (local cluster unless DATABASE_URL is set)
//! cargo run -p entity --example basics
//! ```

use std::path::Path;

use db_connect::PoolSettings;
use entity::{agent_runs, prelude::*};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, ModelTrait, QueryFilter, Set};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let url = dev_servers::database_url_or_local(&workspace)?;
    let db = db_connect::connect(&url, &PoolSettings::default()).await?;

    let ada: User = NewUser {
        id: Set(format!("user_{}", uuid::Uuid::new_v4().simple())),
        name: Set("Ada Lovelace".to_owned()),
        email: Set(format!("ada+{}@example.com", uuid::Uuid::new_v4().simple())),
        ..Default::default()
    }
    .insert(&db)
    .await?;

    let read: User = Users::find_by_id(ada.id.clone())
        .one(&db)
        .await?
        .expect("the user just inserted");
    println!("{}", serde_json::to_string_pretty(&read)?);

    let running: Vec<AgentRun> = AgentRuns::find()
        .filter(agent_runs::Column::Status.eq(AgentRunStatus::Running))
        .all(&db)
        .await?;
    println!("{} agent runs are running", running.len());

    read.delete(&db).await?;
    Ok(())
}
