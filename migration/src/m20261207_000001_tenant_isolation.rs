//! Tenant isolation in the database (issue 22): the roles of the tenant model (`NOLOGIN`,
//! `NOBYPASSRLS`), the fail-closed `current_organization_id()`, row-level security enabled and
//! forced (on a Citus coordinator only enabled: `crate::tenancy::up_statements` says why) on
//! every tenant and routing table with a policy on the transaction's organization,
//! and the grants of each role, all as [`crate::tenancy`] classifies the tables. One statement
//! per `execute`, so it runs the same after the Citus distribution step, which propagates the
//! function, the policies and the grants to every shard; there the policies call the function
//! without the subquery Citus cannot propagate ([`crate::tenancy::isolation_predicate`]).
//!
//! `down` leaves the roles: they belong to the cluster, and another database may use them.

use sea_orm_migration::prelude::*;

use crate::{
    conventions::execute_each,
    m20261201_000005_citus_distribution::on_citus_coordinator,
    tenancy::{down_statements, up_statements},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let on_citus = on_citus_coordinator(manager).await?;
        execute_each(manager, &up_statements(on_citus)).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        execute_each(manager, &down_statements()).await
    }
}
