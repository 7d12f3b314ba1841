//! Better Auth's core and two-factor tables: users, their sessions (the newest still valid,
//! older ones expired), email-and-password and OAuth accounts, verification tokens, and
//! two-factor enrolments.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use super::organizations::Organizations;
use crate::{
    DEMO_EMAIL,
    copy::{Rows, Sink, Table},
    dice::Dice,
    time::{EPOCH, STILL_VALID_UNTIL, Time},
    words,
};

pub static USERS: Table = Table {
    name: "users",
    source: file!(),
    columns: &[
        "id",
        "name",
        "email",
        "email_verified",
        "image",
        "two_factor_enabled",
        "created_at",
        "updated_at",
    ],
};

pub static SESSIONS: Table = Table {
    name: "sessions",
    source: file!(),
    columns: &[
        "id",
        "expires_at",
        "token",
        "ip_address",
        "user_agent",
        "user_id",
        "active_organization_id",
        "created_at",
        "updated_at",
    ],
};

pub static ACCOUNTS: Table = Table {
    name: "accounts",
    source: file!(),
    columns: &[
        "id",
        "account_id",
        "provider_id",
        "user_id",
        "access_token",
        "refresh_token",
        "id_token",
        "access_token_expires_at",
        "refresh_token_expires_at",
        "scope",
        "password",
        "created_at",
        "updated_at",
    ],
};

pub static VERIFICATIONS: Table = Table {
    name: "verifications",
    source: file!(),
    columns: &[
        "id",
        "identifier",
        "value",
        "expires_at",
        "created_at",
        "updated_at",
    ],
};

pub static TWO_FACTORS: Table = Table {
    name: "two_factors",
    source: file!(),
    columns: &[
        "id",
        "secret",
        "backup_codes",
        "user_id",
        "verified",
        "failed_verification_count",
        "locked_until",
    ],
};

/// Better Auth locks two-factor verification after this many failures.
const TWO_FACTOR_LOCK_AFTER: i64 = 5;

pub struct User {
    pub id: String,
    pub email: String,
    pub created: Time,
    pub two_factor: bool,
}

/// `count` users, signing up one after the other over the first 80% of the history. User 0 is
/// the documented demo user; user 1 has two-factor enabled, user 2 has neither a verified email
/// nor an avatar.
pub fn users(seed: u64, count: u64, sink: &mut dyn Sink) -> Vec<User> {
    let mut dice = Dice::new(seed, "users");
    let span = EPOCH.micros() - Time::history_start().micros();
    let mut rows = Rows::start(sink, &USERS, count);
    let users: Vec<User> = (0..count)
        .map(|i| {
            let (name, email) = if i == 0 {
                ("Demo User".to_owned(), DEMO_EMAIL.to_owned())
            } else {
                let (first, last) = (dice.pick(words::FIRST_NAMES), dice.pick(words::LAST_NAMES));
                let email = format!(
                    "{}.{}{i}@{}",
                    first.to_lowercase(),
                    last.to_lowercase(),
                    dice.pick(words::EMAIL_DOMAINS)
                );
                (format!("{first} {last}"), email)
            };
            let offset = (span as f64 * 0.8 * i as f64 / count as f64) as i64;
            let created = Time::history_start().plus(offset + dice.between(0, Time::hours(6)));
            let two_factor = i == 1 || (i > 2 && dice.percent(12));
            let verified = i != 2 && (i < 2 || dice.percent(85));
            let image = (i < 2 || (i > 2 && dice.percent(60)))
                .then(|| format!("https://avatars.example.com/{}.png", dice.hex(12)));
            let id = dice.better_auth_id();
            let updated = created.plus(dice.between(0, Time::days(20))).min(EPOCH);
            rows.row(|r| {
                r.text(&id)
                    .text(&name)
                    .text(&email)
                    .bool(verified)
                    .opt_text(image.as_deref())
                    .bool(two_factor)
                    .time(created)
                    .time(updated);
            });
            User {
                id,
                email,
                created,
                two_factor,
            }
        })
        .collect();
    rows.finish();
    users
}

/// Sessions, accounts, verifications and two-factor rows of every user.
pub fn write_auth(
    seed: u64,
    users: &[User],
    organizations: &Organizations,
    password_hash: &str,
    sink: &mut dyn Sink,
) {
    sessions(seed, users, organizations, sink);
    accounts(seed, users, password_hash, sink);
    verifications(seed, users, sink);
    two_factors(seed, users, sink);
}

/// One to three sessions a user: the newest valid until [`STILL_VALID_UNTIL`], the older ones
/// expired a week after they started.
fn sessions(seed: u64, users: &[User], organizations: &Organizations, sink: &mut dyn Sink) {
    let mut dice = Dice::new(seed, "sessions");
    let mut rows = Rows::start(sink, &SESSIONS, users.len() as u64 * 2);
    for (i, user) in users.iter().enumerate() {
        let count = 1 + dice.below(3);
        for n in 0..count {
            let current = n == count - 1;
            let (created, expires) = if current {
                let created = dice.time_between(EPOCH.plus(-Time::days(7)), EPOCH);
                (created.max(user.created), STILL_VALID_UNTIL)
            } else {
                let created = dice.time_between(user.created, EPOCH.plus(-Time::days(8)));
                (created, created.plus(Time::days(7)))
            };
            let ip = (i == 0 || dice.percent(75)).then(|| ip_address(&mut dice));
            let agent = (i == 0 || dice.percent(75)).then(|| *dice.pick(words::USER_AGENTS));
            let active = organizations
                .home_of(i)
                .filter(|_| i == 0 || dice.percent(70))
                .map(|org| organizations.all[org].id.as_str());
            let (id, token) = (dice.better_auth_id(), dice.better_auth_id());
            let updated = created.plus(dice.between(0, Time::hours(24))).min(expires);
            rows.row(|r| {
                r.text(&id)
                    .time(expires)
                    .text(&token)
                    .opt_text(ip.as_deref())
                    .opt_text(agent)
                    .text(&user.id)
                    .opt_text(active)
                    .time(created)
                    .time(updated.min(EPOCH));
            });
        }
    }
    rows.finish();
}

/// An address from the documentation ranges (RFC 5737, RFC 3849).
fn ip_address(dice: &mut Dice) -> String {
    match dice.below(3) {
        0 => format!("203.0.113.{}", dice.between(1, 254)),
        1 => format!("198.51.100.{}", dice.between(1, 254)),
        _ => format!("2001:db8::{:x}", dice.below(0xffff)),
    }
}

/// An email-and-password account for nine users in ten (always the demo user), and a GitHub
/// or Google account for the rest and a quarter of the others. OAuth tokens are stored the
/// way Better Auth's `encryptOAuthTokens` stores them: ciphertext, never the provider's token.
fn accounts(seed: u64, users: &[User], password_hash: &str, sink: &mut dyn Sink) {
    let mut dice = Dice::new(seed, "accounts");
    let mut rows = Rows::start(sink, &ACCOUNTS, users.len() as u64 * 5 / 4);
    for (i, user) in users.iter().enumerate() {
        let credential = i < 2 || dice.percent(90);
        let oauth = i == 1 || !credential || dice.percent(25);
        if credential {
            let id = dice.better_auth_id();
            rows.row(|r| {
                r.text(&id).text(&user.id).text("credential").text(&user.id);
                for _ in 0..6 {
                    r.null();
                }
                r.text(password_hash).time(user.created).time(user.created);
            });
        }
        if oauth {
            let created = user
                .created
                .plus(dice.between(0, Time::days(30)))
                .min(EPOCH);
            let id = dice.better_auth_id();
            let access = dice.ciphertext(64);
            if i == 1 || dice.percent(60) {
                // A GitHub App's user token: expiring, with a refresh token, for user 1 and half
                // the others; a classic OAuth App's token never expires.
                let expiring = i == 1 || dice.percent(50);
                let refresh = expiring.then(|| dice.ciphertext(80));
                // Unique by construction: (provider_id, account_id) is a unique key.
                let github_id = (10_000_000 + i as u64 * 10 + dice.below(10)).to_string();
                rows.row(|r| {
                    r.text(&id)
                        .text(&github_id)
                        .text("github")
                        .text(&user.id)
                        .text(&access)
                        .opt_text(refresh.as_deref())
                        .null()
                        .opt_time(expiring.then(|| created.plus(Time::hours(8))))
                        .opt_time(expiring.then(|| created.plus(Time::days(184))))
                        .text("read:user,user:email")
                        .null()
                        .time(created)
                        .time(created);
                });
            } else {
                let (refresh, id_token) = (dice.ciphertext(80), dice.ciphertext(600));
                let google_id = format!("1{:014}{}", i, dice.digits(6));
                rows.row(|r| {
                    r.text(&id)
                        .text(&google_id)
                        .text("google")
                        .text(&user.id)
                        .text(&access)
                        .text(&refresh)
                        .text(&id_token)
                        .time(created.plus(Time::hours(1)))
                        .null()
                        .text("openid email profile")
                        .null()
                        .time(created)
                        .time(created);
                });
            }
        }
    }
    rows.finish();
}

/// Password-reset and account-deletion tokens of one user in ten: the first still valid, the
/// others an hour after they were asked for. Identifiers are stored as Better Auth 1.7 stores
/// them with `verification.storeIdentifier: "hashed"` (docs/security.md's recommendation):
/// base64url of the SHA-256 of `reset-password:<token>`, so no token is in the database.
fn verifications(seed: u64, users: &[User], sink: &mut dyn Sink) {
    let mut dice = Dice::new(seed, "verifications");
    let mut rows = Rows::start(sink, &VERIFICATIONS, users.len() as u64 / 10 + 1);
    let mut written = 0;
    for (i, user) in users.iter().enumerate() {
        if i != 0 && !dice.percent(10) {
            continue;
        }
        let kind = if dice.percent(80) {
            "reset-password:"
        } else {
            "delete-account-"
        };
        let created = dice.time_between(user.created, EPOCH);
        let expires = if written == 0 || dice.percent(30) {
            STILL_VALID_UNTIL
        } else {
            created.plus(Time::hours(1))
        };
        let (id, token) = (dice.better_auth_id(), dice.better_auth_id());
        let identifier = hashed_identifier(&format!("{kind}{token}"));
        rows.row(|r| {
            r.text(&id)
                .text(&identifier)
                .text(&user.id)
                .time(expires)
                .time(created)
                .time(created);
        });
        written += 1;
    }
    rows.finish();
}

/// Better Auth's `defaultKeyHasher`: base64url (no padding) of the SHA-256 of the identifier.
fn hashed_identifier(identifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(identifier))
}

/// A verified enrolment for every user with two-factor enabled, and an unfinished one for a few
/// others. The secret and backup codes are encrypted, as Better Auth stores them.
fn two_factors(seed: u64, users: &[User], sink: &mut dyn Sink) {
    let mut dice = Dice::new(seed, "two_factors");
    let mut rows = Rows::start(sink, &TWO_FACTORS, users.len() as u64 / 6);
    let mut written = 0;
    for (i, user) in users.iter().enumerate() {
        let unfinished = !user.two_factor && (i == 2 || (i > 2 && dice.percent(4)));
        if !user.two_factor && !unfinished {
            continue;
        }
        // The first enrolment is locked out; a few others have recent failures.
        let failures = if written == 0 {
            TWO_FACTOR_LOCK_AFTER
        } else if dice.percent(15) {
            dice.between(1, TWO_FACTOR_LOCK_AFTER)
        } else {
            0
        };
        let locked_until = (failures >= TWO_FACTOR_LOCK_AFTER).then(|| {
            dice.time_between(user.created, EPOCH)
                .plus(Time::minutes(15))
        });
        let (id, secret, codes) = (
            dice.better_auth_id(),
            dice.ciphertext(48),
            dice.ciphertext(240),
        );
        rows.row(|r| {
            r.text(&id)
                .text(&secret)
                .text(&codes)
                .text(&user.id)
                .bool(!unfinished)
                .int(failures)
                .opt_time(locked_until);
        });
        written += 1;
    }
    rows.finish();
}

#[cfg(test)]
mod tests {
    #[test]
    fn verification_identifiers_are_hashed_as_better_auth_hashes_them() {
        // node -e 'crypto.createHash("sha256").update("reset-password:abc").digest("base64url")'
        assert_eq!(
            super::hashed_identifier("reset-password:abc"),
            "IMUqJ3lXuvod79AbI4EdsWmdAkZeIP5syfKs7-d5fQQ"
        );
    }
}
