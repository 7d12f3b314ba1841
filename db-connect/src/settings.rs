//! The one reader of the environment: `.env` and the process's variables become the topology
//! (which URL each kind of work uses) and the pool settings, so `DB_POOLER`, the direct,
//! migration and replica URLs and the `DB_*` settings mean the same in every binary, example and
//! service.

use crate::{
    config::{ConfigError, DATABASE_URL_VAR, DatabaseUrl, PoolSettings, load_dotenv},
    topology::{DIRECT_URL_VAR, MIGRATION_URL_VAR, NeedsDirectUrl, Topology},
};

/// Everything the environment says about reaching the database.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `None` when `DATABASE_URL` is unset (the CLIs then use the local cluster).
    pub topology: Option<Topology>,
    /// The `DB_*` variables.
    pub pool: PoolSettings,
    /// Without `DATABASE_URL`: `MIGRATION_DATABASE_URL`, else `DATABASE_DIRECT_URL`, which
    /// migrations may still use.
    migration_only: Option<(&'static str, DatabaseUrl)>,
}

impl Settings {
    /// Reads `.env` (from the current folder or a parent, if there is one), then the process's
    /// variables, which win over it.
    pub fn from_env() -> Result<Self, ConfigError> {
        load_dotenv()?;
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads the variables through `lookup`, so callers and tests can supply their own source.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let pool = PoolSettings::from_lookup(&lookup)?;
        let topology = Topology::from_lookup(&lookup)?;
        let migration_only = match topology {
            Some(_) => None,
            None => [MIGRATION_URL_VAR, DIRECT_URL_VAR]
                .into_iter()
                .find_map(|var| {
                    let raw = lookup(var).filter(|v| !v.trim().is_empty())?;
                    Some(
                        DatabaseUrl::parse(&raw)
                            .map(|url| (var, url))
                            .map_err(|err| ConfigError::InvalidUrlVariable {
                                var,
                                reason: Box::new(err),
                            }),
                    )
                })
                .transpose()?,
        };
        Ok(Self {
            topology,
            pool,
            migration_only,
        })
    }

    /// The topology, or the error naming `DATABASE_URL` when it is unset.
    pub fn topology(&self) -> Result<&Topology, ConfigError> {
        self.topology.as_ref().ok_or_else(|| ConfigError::NotSet {
            var: DATABASE_URL_VAR.to_owned(),
        })
    }

    /// Where migrations go, and the variable that said so: `MIGRATION_DATABASE_URL`, else
    /// `DATABASE_DIRECT_URL`, else `DATABASE_URL` unless it is a transaction-mode pooler (then
    /// the error naming the variable to set). `None` when none is set.
    pub fn migration_url(&self) -> Result<Option<(&'static str, &DatabaseUrl)>, NeedsDirectUrl> {
        let Some(topology) = &self.topology else {
            return Ok(self.migration_only.as_ref().map(|(var, url)| (*var, url)));
        };
        let url = topology.migration_url()?;
        let var = match (&topology.migration, &topology.direct) {
            (Some(_), _) => MIGRATION_URL_VAR,
            (None, Some(_)) => DIRECT_URL_VAR,
            (None, None) => DATABASE_URL_VAR,
        };
        Ok(Some((var, url)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::topology::Pooler;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|var| {
            pairs
                .iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        })
    }

    const APP: &str = "postgresql://app:pw@pooler:6432/app";
    const DIRECT: &str = "postgresql://app:pw@db:5432/app";
    const MIGRATIONS: &str = "postgresql://owner:pw@db:5432/app";

    #[test]
    fn the_topology_and_the_pool_settings_come_from_the_same_variables() {
        let settings = from(&[
            ("DATABASE_URL", APP),
            ("DB_POOLER", "transaction"),
            ("DATABASE_DIRECT_URL", DIRECT),
            (
                "DATABASE_REPLICA_URL",
                "postgresql://app:pw@replica:5432/app",
            ),
            ("DB_REPLICA_MAX_LAG_MS", "250"),
            ("DB_MAX_CONNECTIONS", "3"),
            ("DB_CONNECT_TIMEOUT_SECS", "2"),
        ])
        .unwrap();
        let topology = settings.topology().unwrap();
        assert_eq!(topology.pooler, Pooler::Transaction);
        assert_eq!(topology.application.host(), "pooler");
        assert_eq!(topology.direct.as_ref().unwrap().host(), "db");
        assert_eq!(topology.replica.as_ref().unwrap().host(), "replica");
        assert_eq!(topology.replica_max_lag, Duration::from_millis(250));
        assert_eq!(settings.pool.max_connections, 3);
        assert_eq!(settings.pool.connect_timeout, Duration::from_secs(2));
        let (var, url) = settings.migration_url().unwrap().unwrap();
        assert_eq!((var, url.host()), (DIRECT_URL_VAR, "db"));
    }

    #[test]
    fn migrations_go_to_the_most_specific_url_set_and_say_which() {
        let with = |pairs: &[(&str, &str)]| {
            let settings = from(pairs).unwrap();
            settings
                .migration_url()
                .unwrap()
                .map(|(var, url)| (var, url.user().to_owned(), url.host().to_owned()))
        };
        let owner = |var| Some((var, "owner".to_owned(), "db".to_owned()));
        let app = |var, host: &str| Some((var, "app".to_owned(), host.to_owned()));
        assert_eq!(with(&[]), None);
        assert_eq!(
            with(&[("DATABASE_URL", DIRECT)]),
            app(DATABASE_URL_VAR, "db")
        );
        assert_eq!(
            with(&[
                ("DATABASE_URL", APP),
                ("MIGRATION_DATABASE_URL", MIGRATIONS)
            ]),
            owner(MIGRATION_URL_VAR)
        );
        assert_eq!(
            with(&[("MIGRATION_DATABASE_URL", MIGRATIONS)]),
            owner(MIGRATION_URL_VAR)
        );
        assert_eq!(
            with(&[
                ("MIGRATION_DATABASE_URL", MIGRATIONS),
                ("DATABASE_DIRECT_URL", DIRECT)
            ]),
            owner(MIGRATION_URL_VAR)
        );
        assert_eq!(
            with(&[("DATABASE_DIRECT_URL", DIRECT)]),
            app(DIRECT_URL_VAR, "db")
        );
        // A blank variable is an unset one.
        assert_eq!(
            with(&[
                ("MIGRATION_DATABASE_URL", "  "),
                ("DATABASE_DIRECT_URL", DIRECT)
            ]),
            app(DIRECT_URL_VAR, "db")
        );
        let pooled = from(&[("DATABASE_URL", APP), ("DB_POOLER", "transaction")]).unwrap();
        assert_eq!(pooled.migration_url().unwrap_err().var, MIGRATION_URL_VAR);
    }

    #[test]
    fn a_bad_variable_is_named_whichever_part_reads_it() {
        let named = |pairs: &[(&str, &str)]| from(pairs).unwrap_err().to_string();
        assert!(named(&[("DB_MAX_CONNECTIONS", "lots")]).contains("DB_MAX_CONNECTIONS"));
        assert!(named(&[("DATABASE_URL", APP), ("DB_POOLER", "statement")]).contains("DB_POOLER"));
        assert!(
            named(&[("MIGRATION_DATABASE_URL", "postgresql://nobody@db/app")])
                .starts_with("MIGRATION_DATABASE_URL is invalid")
        );
        let unset = from(&[]).unwrap();
        assert_eq!(
            unset.topology().unwrap_err(),
            ConfigError::NotSet {
                var: DATABASE_URL_VAR.to_owned()
            }
        );
    }
}
