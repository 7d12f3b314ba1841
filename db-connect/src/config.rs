//! `DATABASE_URL` and pool settings: parsed and validated before any connection is tried, with
//! the password held in a secret that no `Display`, `Debug` or error message ever reveals.

use std::{fmt, time::Duration};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// The environment variable that names the database every crate of the workspace connects to.
pub const DATABASE_URL_VAR: &str = "DATABASE_URL";

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1); longer database names are truncated
/// silently by the server, which would connect to a different database than the one named.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Everything but RFC 3986's unreserved characters is percent-encoded in a rendered URL.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The connection parameters a URL may carry, each handed to the driver as it is, except
/// `pgbouncer`, which is ours (see [`DatabaseUrl::pooler_flag`]). Anything else is refused by
/// name: a driver that ignores an unknown parameter logs it with its value, which may be a
/// secret (`sslpassword`), and one that silently wins over the URL's own parts (`host`, `user`)
/// would connect somewhere else than the URL seems to say.
const SUPPORTED_PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "options",
    "statement-cache-capacity",
    POOLER_PARAM,
];

/// Parameters that would override a part the URL already names.
const PART_PARAMS: &[(&str, &str)] = &[
    ("host", "host"),
    ("hostaddr", "host"),
    ("port", "port"),
    ("dbname", "database name"),
    ("user", "user"),
    ("password", "password"),
];

const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Prisma's spelling of "this URL is a transaction-mode PgBouncer".
pub const POOLER_PARAM: &str = "pgbouncer";

/// Longest parameter name quoted back in an error; a longer one is cut.
const MAX_SHOWN_KEY: usize = 64;

const SHAPE: &str = "expected postgresql://user:password@host:port/database";
const ENCODING_HINT: &str = "percent-encode special characters in the user or password (@ -> %40, : -> %3A, / -> %2F, # -> %23, ? -> %3F, % -> %25)";

/// Why a database URL or a pool setting was rejected. No variant holds the password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{var} is not set; {SHAPE}")]
    NotSet { var: String },
    #[error("{var} is empty; {SHAPE}")]
    Empty { var: String },
    #[error("database URL is malformed ({reason}); {SHAPE}; {ENCODING_HINT}")]
    Malformed { reason: String },
    #[error("database URL has no scheme; {SHAPE}")]
    MissingScheme,
    #[error("database URL scheme `{scheme}` is not supported; use postgresql:// or postgres://")]
    UnsupportedScheme { scheme: String },
    #[error("database URL has no user; {SHAPE}")]
    MissingUser,
    #[error("database URL has no password; {SHAPE}")]
    MissingPassword,
    #[error("database URL has no host; {SHAPE}")]
    MissingHost,
    #[error("database URL has no port (PostgreSQL's default is 5432); {SHAPE}")]
    MissingPort,
    #[error("database URL port {port} is invalid: it must be between 1 and 65535")]
    InvalidPort { port: u16 },
    #[error("database URL has no database name; {SHAPE}")]
    MissingDatabase,
    #[error("database URL database name is invalid: {reason}")]
    InvalidDatabase { reason: String },
    #[error("database URL {part} is not valid UTF-8 after percent-decoding")]
    InvalidEncoding { part: &'static str },
    #[error("database URL has a fragment (`#...`); {ENCODING_HINT}")]
    UnexpectedFragment,
    #[error("{var}={value} is invalid: {reason}")]
    InvalidSetting {
        var: &'static str,
        value: String,
        reason: String,
    },
    #[error("could not read .env: {reason}")]
    DotEnv { reason: String },
    #[error(
        "database URL parameter `{key}` is not supported (its value is not shown); supported: {}",
        SUPPORTED_PARAMS.join(", ")
    )]
    UnsupportedParameter { key: String },
    #[error(
        "database URL parameter `{key}` would replace the URL's {part}; write the {part} in the URL itself"
    )]
    ParameterOverridesPart { key: String, part: &'static str },
    #[error("database URL parameter `{key}` is invalid: {reason}")]
    InvalidParameter { key: String, reason: String },
    #[error("{var} is invalid: {reason}")]
    InvalidUrlVariable {
        var: &'static str,
        reason: Box<ConfigError>,
    },
}

/// A validated PostgreSQL connection URL. The password is a [`SecretString`]: `Display` and
/// `Debug` print `****` in its place, and only [`DatabaseUrl::expose`] gives the full URL.
#[derive(Clone)]
pub struct DatabaseUrl {
    scheme: String,
    user: String,
    password: SecretString,
    host: String,
    port: u16,
    database: String,
    /// The connection parameters for the driver (never `pgbouncer`, which is ours).
    query: Parameters,
    pooler_flag: Option<bool>,
}

impl DatabaseUrl {
    /// Builds a URL from its parts, validating the database name.
    pub fn new(
        user: impl Into<String>,
        password: SecretString,
        host: impl Into<String>,
        port: u16,
        database: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let url = Self {
            scheme: "postgresql".to_owned(),
            user: user.into(),
            password,
            host: host.into(),
            port,
            database: database.into(),
            query: Vec::new(),
            pooler_flag: None,
        };
        url.validate_parts()?;
        Ok(url)
    }

    /// Parses and validates a URL: scheme, user, password, host, port and database are required.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(ConfigError::Empty {
                var: DATABASE_URL_VAR.to_owned(),
            });
        }
        let scheme_given = raw
            .split_once("://")
            .map(|(scheme, _)| scheme)
            .filter(|scheme| looks_like_scheme(scheme));
        let Some(scheme) = scheme_given else {
            return Err(ConfigError::MissingScheme);
        };
        if !matches!(
            scheme.to_ascii_lowercase().as_str(),
            "postgres" | "postgresql"
        ) {
            return Err(ConfigError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            });
        }
        let url = Url::parse(raw).map_err(|err| ConfigError::Malformed {
            reason: err.to_string(),
        })?;
        if url.fragment().is_some() {
            return Err(ConfigError::UnexpectedFragment);
        }
        let user = decode(url.username(), "user")?;
        let password = decode(url.password().unwrap_or_default(), "password")?;
        let host = url.host_str().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let database = decode(url.path().trim_start_matches('/'), "database name")?;
        let (query, pooler_flag) = checked_parameters(&url)?;
        let parsed = Self {
            scheme: url.scheme().to_owned(),
            user,
            password: SecretString::from(password),
            host: host.to_owned(),
            port: url.port().ok_or(ConfigError::MissingPort)?,
            database,
            query,
            pooler_flag,
        };
        parsed.validate_parts()?;
        Ok(parsed)
    }

    /// `DATABASE_URL` as [`Settings::from_env`](crate::Settings::from_env) reads it (with
    /// `.env`, and refusing what the rest of the environment gets wrong); `Ok(None)` when it is
    /// unset or blank, so callers can fall back to the local cluster.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        if let Err(std::env::VarError::NotUnicode(_)) = std::env::var(DATABASE_URL_VAR) {
            return Err(ConfigError::InvalidEncoding {
                part: "environment variable",
            });
        }
        Ok(crate::Settings::from_env()?
            .topology
            .map(|topology| topology.application))
    }

    /// Like [`DatabaseUrl::from_env`], but an unset `DATABASE_URL` is an error.
    pub fn require_env() -> Result<Self, ConfigError> {
        Self::from_env()?.ok_or_else(|| ConfigError::NotSet {
            var: DATABASE_URL_VAR.to_owned(),
        })
    }

    fn validate_parts(&self) -> Result<(), ConfigError> {
        if self.user.is_empty() {
            return Err(ConfigError::MissingUser);
        }
        if self.password.expose_secret().is_empty() {
            return Err(ConfigError::MissingPassword);
        }
        if self.host.is_empty() {
            return Err(ConfigError::MissingHost);
        }
        if self.port == 0 {
            return Err(ConfigError::InvalidPort { port: self.port });
        }
        validate_database_name(&self.database)
    }

    /// The same server and credentials, another database (e.g. `postgres` for admin work).
    pub fn with_database(&self, database: &str) -> Result<Self, ConfigError> {
        validate_database_name(database)?;
        Ok(Self {
            database: database.to_owned(),
            ..self.clone()
        })
    }

    /// The same database and credentials at another address (e.g. a pooler in front of it).
    pub fn with_host_port(&self, host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            ..self.clone()
        }
    }

    /// The same URL, saying whether it goes through a transaction-mode pooler (`pgbouncer=`).
    pub fn with_pooler_flag(self, flag: Option<bool>) -> Self {
        Self {
            pooler_flag: flag,
            ..self
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &SecretString {
        &self.password
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// `?pgbouncer=true|false` as given (Prisma's flag for a transaction-mode pooler); `None`
    /// when the URL does not say. The flag is not passed on to the driver.
    pub fn pooler_flag(&self) -> Option<bool> {
        self.pooler_flag
    }

    /// The full URL, password included, for handing to a driver. Keep it in the secret.
    pub fn expose(&self) -> SecretString {
        SecretString::from(self.render(Some(self.password.expose_secret())))
    }

    fn render(&self, password: Option<&str>) -> String {
        let encode = |s: &str| utf8_percent_encode(s, ENCODED).to_string();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut out = format!(
            "{}://{}:{}@{}:{}/{}",
            self.scheme,
            encode(&self.user),
            password.map_or_else(|| "****".to_owned(), encode),
            host,
            self.port,
            encode(&self.database),
        );
        let flag = password
            .is_none()
            .then_some(self.pooler_flag)
            .flatten()
            .map(|on| (POOLER_PARAM.to_owned(), on.to_string()));
        for (i, (key, value)) in self.query.iter().chain(flag.as_ref()).enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(&encode(key));
            out.push('=');
            out.push_str(&encode(value));
        }
        out
    }
}

impl fmt::Display for DatabaseUrl {
    /// The URL with the password (and any secret query parameter) replaced by `****`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(None))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

type Parameters = Vec<(String, String)>;

/// The URL's parameters, each checked by name (never quoting a value back), without our own
/// `pgbouncer` flag, which is returned apart.
fn checked_parameters(url: &Url) -> Result<(Parameters, Option<bool>), ConfigError> {
    let mut query = Vec::new();
    let mut pooler_flag = None;
    for (key, value) in url.query_pairs() {
        let shown_key = || key.chars().take(MAX_SHOWN_KEY).collect::<String>();
        let invalid = |reason: String| ConfigError::InvalidParameter {
            key: shown_key(),
            reason,
        };
        if let Some((_, part)) = PART_PARAMS.iter().find(|(name, _)| *name == key) {
            return Err(ConfigError::ParameterOverridesPart {
                key: shown_key(),
                part,
            });
        }
        if !SUPPORTED_PARAMS.contains(&key.as_ref()) {
            return Err(ConfigError::UnsupportedParameter { key: shown_key() });
        }
        match key.as_ref() {
            POOLER_PARAM => {
                pooler_flag = Some(match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("expected true or false".to_owned())),
                });
                continue;
            }
            "sslmode" if !SSL_MODES.contains(&value.as_ref()) => {
                return Err(invalid(format!("expected one of {}", SSL_MODES.join(", "))));
            }
            "statement-cache-capacity" if value.parse::<usize>().is_err() => {
                return Err(invalid("expected a whole number".to_owned()));
            }
            _ => {}
        }
        query.push((key.into_owned(), value.into_owned()));
    }
    Ok((query, pooler_flag))
}

fn looks_like_scheme(candidate: &str) -> bool {
    let mut chars = candidate.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && candidate.len() <= 32
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn decode(raw: &str, part: &'static str) -> Result<String, ConfigError> {
    percent_decode(raw).ok_or(ConfigError::InvalidEncoding { part })
}

fn percent_decode(raw: &str) -> Option<String> {
    percent_decode_str(raw)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

fn validate_database_name(name: &str) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidDatabase {
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(ConfigError::MissingDatabase);
    }
    if name.contains('/') {
        return Err(invalid("it contains `/`; a URL names exactly one database"));
    }
    if name.contains('\0') {
        return Err(invalid("it contains a NUL character"));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(invalid(&format!(
            "it is {} bytes long; PostgreSQL allows at most {MAX_IDENTIFIER_BYTES}",
            name.len()
        )));
    }
    Ok(())
}

/// Loads `.env` from the current directory or a parent, if there is one. A malformed line is
/// reported by number only: its text could hold a password.
pub fn load_dotenv() -> Result<(), ConfigError> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(err) if err.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(_, index)) => Err(ConfigError::DotEnv {
            reason: format!("line {} cannot be parsed", index + 1),
        }),
        Err(dotenvy::Error::Io(err)) => Err(ConfigError::DotEnv {
            reason: err.kind().to_string(),
        }),
        Err(_) => Err(ConfigError::DotEnv {
            reason: "a value is not valid".to_owned(),
        }),
    }
}

/// Connection-pool settings, read from the environment with defaults that suit a web service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// `DB_MAX_CONNECTIONS`, default 10.
    pub max_connections: u32,
    /// `DB_MIN_CONNECTIONS`, default 0.
    pub min_connections: u32,
    /// `DB_CONNECT_TIMEOUT_SECS`, default 10: how long to wait for the server to answer.
    pub connect_timeout: Duration,
    /// `DB_ACQUIRE_TIMEOUT_SECS`, default 10: how long a caller waits for a free pooled connection.
    pub acquire_timeout: Duration,
    /// `DB_IDLE_TIMEOUT_SECS`, default 600.
    pub idle_timeout: Duration,
    /// `DB_MAX_LIFETIME_SECS`, default 1800.
    pub max_lifetime: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(10),
            acquire_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(1800),
        }
    }
}

impl PoolSettings {
    /// The `DB_*` variables as [`Settings::from_env`](crate::Settings::from_env) reads them.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(crate::Settings::from_env()?.pool)
    }

    /// Reads the settings through `lookup`, so callers and tests can supply their own source.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let number = |var: &'static str, default: u64, min: u64| -> Result<u64, ConfigError> {
            let Some(value) = lookup(var).filter(|v| !v.trim().is_empty()) else {
                return Ok(default);
            };
            let invalid = |reason: String| ConfigError::InvalidSetting {
                var,
                value: value.clone(),
                reason,
            };
            let parsed: u64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("expected a whole number".to_owned()))?;
            if parsed < min || parsed > u64::from(u32::MAX) {
                return Err(invalid(format!("expected {min} to {}", u32::MAX)));
            }
            Ok(parsed)
        };
        let secs =
            |var, default: Duration| number(var, default.as_secs(), 1).map(Duration::from_secs);
        let settings = Self {
            max_connections: number("DB_MAX_CONNECTIONS", defaults.max_connections.into(), 1)?
                as u32,
            min_connections: number("DB_MIN_CONNECTIONS", defaults.min_connections.into(), 0)?
                as u32,
            connect_timeout: secs("DB_CONNECT_TIMEOUT_SECS", defaults.connect_timeout)?,
            acquire_timeout: secs("DB_ACQUIRE_TIMEOUT_SECS", defaults.acquire_timeout)?,
            idle_timeout: secs("DB_IDLE_TIMEOUT_SECS", defaults.idle_timeout)?,
            max_lifetime: secs("DB_MAX_LIFETIME_SECS", defaults.max_lifetime)?,
        };
        if settings.min_connections > settings.max_connections {
            return Err(ConfigError::InvalidSetting {
                var: "DB_MIN_CONNECTIONS",
                value: settings.min_connections.to_string(),
                reason: format!(
                    "it exceeds DB_MAX_CONNECTIONS ({})",
                    settings.max_connections
                ),
            });
        }
        Ok(settings)
    }
}
