//! `DATABASE_URL` validation and pool settings: every malformed URL gets an error that names
//! what is wrong, and no error, `Display` or `Debug` ever shows the password.

use std::time::Duration;

use db_connect::{ConfigError, DatabaseUrl, PoolSettings, Pooler, Topology};
use dev_servers::{ClusterError, PgBinaries};
use secrecy::ExposeSecret;

const PASSWORD: &str = "s3cr3t-PW";

fn rejected(input: &str) -> ConfigError {
    let err = DatabaseUrl::parse(input)
        .err()
        .unwrap_or_else(|| panic!("`{input}` was accepted"));
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(
            !shown.contains(PASSWORD),
            "`{input}` leaked the password: {shown}"
        );
    }
    err
}

/// A malformed input, which error it must give, and words its message must contain.
type Case = (String, fn(&ConfigError) -> bool, &'static str);

#[test]
fn malformed_urls_each_get_an_error_naming_the_problem() {
    let long_name = "d".repeat(64);
    let cases: Vec<Case> = vec![
        (
            "".into(),
            |e| matches!(e, ConfigError::Empty { .. }),
            "is empty",
        ),
        (
            "   ".into(),
            |e| matches!(e, ConfigError::Empty { .. }),
            "is empty",
        ),
        (
            format!("u:{PASSWORD}@h:5432/db"),
            |e| matches!(e, ConfigError::MissingScheme),
            "no scheme",
        ),
        (
            format!("postgresql:/u:{PASSWORD}@h:5432/db"),
            |e| matches!(e, ConfigError::MissingScheme),
            "no scheme",
        ),
        (
            format!("mysql://u:{PASSWORD}@h:3306/db"),
            |e| matches!(e, ConfigError::UnsupportedScheme { scheme } if scheme == "mysql"),
            "`mysql` is not supported",
        ),
        (
            format!("http://u:{PASSWORD}@h:5432/db"),
            |e| matches!(e, ConfigError::UnsupportedScheme { .. }),
            "not supported",
        ),
        (
            format!("postgresql://:{PASSWORD}@h:5432/db"),
            |e| matches!(e, ConfigError::MissingUser),
            "no user",
        ),
        (
            "postgresql://u@h:5432/db".into(),
            |e| matches!(e, ConfigError::MissingPassword),
            "no password",
        ),
        (
            "postgresql://u:@h:5432/db".into(),
            |e| matches!(e, ConfigError::MissingPassword),
            "no password",
        ),
        (
            format!("postgresql://u:{PASSWORD}@:5432/db"),
            |e| matches!(e, ConfigError::MissingHost | ConfigError::Malformed { .. }),
            "host",
        ),
        (
            format!("postgresql://u:{PASSWORD}@h/db"),
            |e| matches!(e, ConfigError::MissingPort),
            "no port",
        ),
        (
            format!("postgresql://u:{PASSWORD}@h:notaport/db"),
            |e| matches!(e, ConfigError::Malformed { .. }),
            "invalid port",
        ),
        (
            format!("postgresql://u:{PASSWORD}@h:99999/db"),
            |e| matches!(e, ConfigError::Malformed { .. }),
            "invalid port",
        ),
        (
            format!("postgresql://u:{PASSWORD}@h:0/db"),
            |e| matches!(e, ConfigError::InvalidPort { port: 0 }),
            "port 0 is invalid",
        ),
        (
            format!("postgresql://u:{PASSWORD}@h:5432"),
            |e| matches!(e, ConfigError::MissingDatabase),
            "no database name",
        ),
        (
            format!("postgresql://u:{PASSWORD}@h:5432/"),
            |e| matches!(e, ConfigError::MissingDatabase),
            "no database name",
        ),
        (
            format!("postgresql://u:{PASSWORD}@h:5432/a/b"),
            |e| matches!(e, ConfigError::InvalidDatabase { .. }),
            "exactly one database",
        ),
        (
            format!("postgresql://u:{PASSWORD}@h:5432/{long_name}"),
            |e| matches!(e, ConfigError::InvalidDatabase { .. }),
            "at most 63",
        ),
        (
            format!("postgresql://u:{PASSWORD}@h:5432/db#frag"),
            |e| matches!(e, ConfigError::UnexpectedFragment),
            "fragment",
        ),
        // An unencoded `#` in the password cuts the URL short; the hint says to encode it.
        (
            "postgresql://u:s3cr3t#PW@h:5432/db".into(),
            |e| {
                matches!(
                    e,
                    ConfigError::Malformed { .. } | ConfigError::UnexpectedFragment
                )
            },
            "percent-encode",
        ),
        (
            "postgresql://u:%FF%FE@h:5432/db".into(),
            |e| matches!(e, ConfigError::InvalidEncoding { part: "password" }),
            "not valid UTF-8",
        ),
        (
            format!("postgresql://u:{PASSWORD}@exa mple.com:5432/db"),
            |e| matches!(e, ConfigError::Malformed { .. }),
            "malformed",
        ),
    ];
    assert!(cases.len() >= 20);
    for (input, is_expected, says) in &cases {
        let err = rejected(input);
        assert!(is_expected(&err), "`{input}` gave the wrong error: {err:?}");
        assert!(
            err.to_string().contains(says),
            "`{input}`: `{err}` should say `{says}`"
        );
        assert!(!err.to_string().contains("s3cr3t#PW"), "{err}");
    }
}

#[test]
fn a_valid_url_is_parsed_decoded_and_shown_masked() {
    let url = DatabaseUrl::parse(
        "postgres://app%20user:p%40ss%3Aw%2Frd@db.internal:6432/app_db?sslmode=require",
    )
    .unwrap();
    assert_eq!(url.user(), "app user");
    assert_eq!(url.password().expose_secret(), "p@ss:w/rd");
    assert_eq!(url.host(), "db.internal");
    assert_eq!(url.port(), 6432);
    assert_eq!(url.database(), "app_db");
    assert_eq!(
        url.to_string(),
        "postgres://app%20user:****@db.internal:6432/app_db?sslmode=require"
    );
    assert!(!format!("{url:?}").contains("p@ss"));
    // The exposed URL parses back to the same parts.
    let again = DatabaseUrl::parse(url.expose().expose_secret()).unwrap();
    assert_eq!(again.password().expose_secret(), "p@ss:w/rd");
    assert_eq!(again.user(), "app user");
    assert_eq!(again.to_string(), url.to_string());
}

#[test]
fn ipv6_hosts_and_query_parameters_are_handled() {
    let url = DatabaseUrl::parse(&format!(
        "postgresql://u:{PASSWORD}@[::1]:5432/db?sslmode=require&application_name=api"
    ))
    .unwrap();
    assert_eq!(url.host(), "::1");
    let shown = url.to_string();
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains("[::1]:5432"), "{shown}");
    assert!(shown.contains("sslmode=require"), "{shown}");
    assert!(shown.contains("application_name=api"), "{shown}");
    assert!(url.expose().expose_secret().contains(PASSWORD));
}

#[test]
fn unsupported_parameters_are_refused_by_name_never_by_value() {
    const VALUE: &str = "param-secret-4b7e";
    for key in ["sslpassword", "passfile", "target_session_attrs", "Sslmode"] {
        let err = rejected(&format!(
            "postgresql://u:{PASSWORD}@h:5432/db?{key}={VALUE}"
        ));
        assert!(
            matches!(&err, ConfigError::UnsupportedParameter { key: k } if k == key),
            "{key}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&format!("`{key}`")), "{message}");
        assert!(message.contains("sslmode, sslrootcert"), "{message}");
        assert!(!message.contains(VALUE) && !format!("{err:?}").contains(VALUE));
    }
}

#[test]
fn parameters_that_would_replace_a_part_of_the_url_are_refused() {
    for (key, part) in [
        ("host", "host"),
        ("hostaddr", "host"),
        ("port", "port"),
        ("dbname", "database name"),
        ("user", "user"),
        ("password", "password"),
    ] {
        let err = rejected(&format!(
            "postgresql://u:{PASSWORD}@h:5432/db?{key}={PASSWORD}"
        ));
        assert!(
            matches!(&err, ConfigError::ParameterOverridesPart { key: k, part: p } if k == key && *p == part),
            "{key}: {err:?}"
        );
    }
}

#[test]
fn bad_values_of_known_parameters_are_named() {
    for (query, key) in [
        ("sslmode=sometimes", "sslmode"),
        ("statement-cache-capacity=many", "statement-cache-capacity"),
        ("pgbouncer=yes", "pgbouncer"),
    ] {
        let err = rejected(&format!("postgresql://u:{PASSWORD}@h:5432/db?{query}"));
        assert!(
            matches!(&err, ConfigError::InvalidParameter { key: k, .. } if k == key),
            "{query}: {err:?}"
        );
    }
}

#[test]
fn the_pgbouncer_flag_is_read_shown_and_kept_from_the_driver() {
    let url = DatabaseUrl::parse(&format!(
        "postgresql://u:{PASSWORD}@h:6432/db?application_name=api&pgbouncer=true"
    ))
    .unwrap();
    assert_eq!(url.pooler_flag(), Some(true));
    assert!(
        url.to_string()
            .ends_with("?application_name=api&pgbouncer=true")
    );
    let driver = url.expose().expose_secret().to_owned();
    assert!(
        !driver.contains("pgbouncer"),
        "the driver gets no unknown parameter"
    );
    assert!(driver.ends_with("?application_name=api"));
    let plain = DatabaseUrl::parse(&format!("postgresql://u:{PASSWORD}@h:5432/db")).unwrap();
    assert_eq!(plain.pooler_flag(), None);
}

fn topology(pairs: &[(&str, &str)]) -> Result<Option<Topology>, ConfigError> {
    Topology::from_lookup(|var| {
        pairs
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    })
}

const APP: &str = "postgresql://app:pw-app@pooler:6432/app";
const DIRECT: &str = "postgresql://app:pw-direct@db:5432/app";
const MIGRATE: &str = "postgresql://owner:pw-migrate@db:5432/app";

#[test]
fn without_a_pooler_every_kind_of_work_uses_database_url() {
    assert!(topology(&[]).unwrap().is_none());
    let t = topology(&[("DATABASE_URL", APP)]).unwrap().unwrap();
    assert_eq!(t.pooler, Pooler::None);
    assert_eq!(t.migration_url().unwrap().host(), "pooler");
    assert_eq!(t.session_url("LISTEN").unwrap().host(), "pooler");
    assert_eq!(t.replica_max_lag, Duration::from_millis(1000));
    let session = topology(&[("DATABASE_URL", APP), ("DB_POOLER", "session")]).unwrap();
    assert_eq!(session.unwrap().pooler, Pooler::None);
}

#[test]
fn behind_a_transaction_pooler_sessions_and_migrations_need_a_direct_url() {
    for pairs in [
        vec![("DATABASE_URL", APP), ("DB_POOLER", "transaction")],
        vec![(
            "DATABASE_URL",
            "postgresql://app:pw@pooler:6432/app?pgbouncer=true",
        )],
    ] {
        let t = topology(&pairs).unwrap().unwrap();
        assert_eq!(t.pooler, Pooler::Transaction, "{pairs:?}");
        let err = t.migration_url().unwrap_err();
        assert_eq!(err.var, "MIGRATION_DATABASE_URL");
        assert!(
            err.to_string().contains("set MIGRATION_DATABASE_URL"),
            "{err}"
        );
        let err = t.session_url("LISTEN").unwrap_err();
        assert_eq!(err.var, "DATABASE_DIRECT_URL");
        assert!(err.to_string().contains("LISTEN cannot work"), "{err}");
    }
    let with_direct = topology(&[
        ("DATABASE_URL", APP),
        ("DB_POOLER", "transaction"),
        ("DATABASE_DIRECT_URL", DIRECT),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(with_direct.session_url("LISTEN").unwrap().host(), "db");
    assert_eq!(with_direct.migration_url().unwrap().user(), "app");
    let with_migration = topology(&[
        ("DATABASE_URL", APP),
        ("DB_POOLER", "transaction"),
        ("DATABASE_DIRECT_URL", DIRECT),
        ("MIGRATION_DATABASE_URL", MIGRATE),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(with_migration.migration_url().unwrap().user(), "owner");
}

#[test]
fn contradictory_or_malformed_topology_settings_name_the_variable() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("DATABASE_URL", APP), ("DB_POOLER", "statement")],
            "DB_POOLER",
        ),
        (
            vec![
                (
                    "DATABASE_URL",
                    "postgresql://app:pw@pooler:6432/app?pgbouncer=true",
                ),
                ("DB_POOLER", "none"),
            ],
            "DB_POOLER",
        ),
        (
            vec![
                ("DATABASE_URL", APP),
                ("MIGRATION_DATABASE_URL", "postgresql://x"),
            ],
            "MIGRATION_DATABASE_URL",
        ),
        (
            vec![
                ("DATABASE_URL", APP),
                (
                    "DATABASE_DIRECT_URL",
                    "postgresql://a:pw-x@db:5432/app?pgbouncer=true",
                ),
            ],
            "DATABASE_DIRECT_URL",
        ),
        (
            vec![("DATABASE_URL", APP), ("DB_REPLICA_MAX_LAG_MS", "soon")],
            "DB_REPLICA_MAX_LAG_MS",
        ),
    ];
    for (pairs, var) in cases {
        let err = topology(&pairs).expect_err(&format!("{pairs:?} was accepted"));
        let message = err.to_string();
        assert!(message.starts_with(var), "{pairs:?}: {message}");
        for secret in ["pw-app", "pw-x", "pw-migrate", "pw@"] {
            assert!(
                !message.contains(secret) && !format!("{err:?}").contains(secret),
                "{message}"
            );
        }
    }
}

#[test]
fn with_database_keeps_the_server_and_validates_the_name() {
    let url = DatabaseUrl::parse(&format!("postgresql://u:{PASSWORD}@h:5432/app")).unwrap();
    let admin = url.with_database("postgres").unwrap();
    assert_eq!(admin.database(), "postgres");
    assert_eq!(admin.password().expose_secret(), PASSWORD);
    assert!(matches!(
        url.with_database(""),
        Err(ConfigError::MissingDatabase)
    ));
}

fn settings(pairs: &[(&str, &str)]) -> Result<PoolSettings, ConfigError> {
    PoolSettings::from_lookup(|var| {
        pairs
            .iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| v.to_string())
    })
}

#[test]
fn pool_settings_have_defaults_and_read_overrides() {
    assert_eq!(settings(&[]).unwrap(), PoolSettings::default());
    let custom = settings(&[
        ("DB_MAX_CONNECTIONS", "32"),
        ("DB_ACQUIRE_TIMEOUT_SECS", " 3 "),
    ])
    .unwrap();
    assert_eq!(custom.max_connections, 32);
    assert_eq!(custom.acquire_timeout, std::time::Duration::from_secs(3));
    assert_eq!(
        custom.min_connections,
        PoolSettings::default().min_connections
    );
}

#[test]
fn bad_pool_settings_name_the_variable() {
    for (pairs, var) in [
        (vec![("DB_MAX_CONNECTIONS", "lots")], "DB_MAX_CONNECTIONS"),
        (vec![("DB_MAX_CONNECTIONS", "0")], "DB_MAX_CONNECTIONS"),
        (
            vec![("DB_CONNECT_TIMEOUT_SECS", "-5")],
            "DB_CONNECT_TIMEOUT_SECS",
        ),
        (
            vec![("DB_IDLE_TIMEOUT_SECS", "99999999999")],
            "DB_IDLE_TIMEOUT_SECS",
        ),
        (
            vec![("DB_MAX_CONNECTIONS", "4"), ("DB_MIN_CONNECTIONS", "5")],
            "DB_MIN_CONNECTIONS",
        ),
    ] {
        let err = settings(&pairs).expect_err(&format!("{pairs:?} was accepted"));
        assert!(
            matches!(&err, ConfigError::InvalidSetting { var: v, .. } if *v == var),
            "{pairs:?}: {err:?}"
        );
        assert!(err.to_string().starts_with(var), "{err}");
    }
}

#[test]
fn missing_server_binaries_say_how_to_install_them() {
    let empty = tempfile::tempdir().unwrap();
    let err = PgBinaries::search([empty.path().to_path_buf()]).unwrap_err();
    assert!(matches!(err, ClusterError::BinariesNotFound));
    let message = err.to_string();
    assert!(message.contains("apt-get install postgresql"), "{message}");
    assert!(message.contains("DATABASE_URL"), "{message}");
}
