//! `DATABASE_URL` validation and pool settings: every malformed URL gets an error that names
//! what is wrong, and no error, `Display` or `Debug` ever shows the password.

use db_support::{ClusterError, ConfigError, DatabaseUrl, PgBinaries, PoolSettings};
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
fn ipv6_hosts_and_secret_query_parameters_are_handled() {
    let url = DatabaseUrl::parse(&format!(
        "postgresql://u:{PASSWORD}@[::1]:5432/db?sslpassword={PASSWORD}&application_name=api"
    ))
    .unwrap();
    assert_eq!(url.host(), "::1");
    let shown = url.to_string();
    assert!(!shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains("[::1]:5432"), "{shown}");
    assert!(shown.contains("sslpassword=****"), "{shown}");
    assert!(shown.contains("application_name=api"), "{shown}");
    assert!(url.expose().expose_secret().contains(PASSWORD));
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
