//! Better Auth's organization plugin: organizations, each owned by one user, with admins and
//! members (a few people belong to two), and invitations in every state.

use roles::{ADMIN, MEMBER, OWNER};

use super::people::User;
use crate::{
    copy::{Rows, Sink, Table},
    dice::Dice,
    time::{EPOCH, STILL_VALID_UNTIL, Time},
    words,
};

pub static ORGANIZATIONS: Table = Table {
    name: "organizations",
    source: file!(),
    columns: &["id", "name", "slug", "logo", "metadata", "created_at"],
};

pub static MEMBERS: Table = Table {
    name: "members",
    source: file!(),
    columns: &["id", "organization_id", "user_id", "role", "created_at"],
};

pub static INVITATIONS: Table = Table {
    name: "invitations",
    source: file!(),
    columns: &[
        "id",
        "organization_id",
        "email",
        "role",
        "status",
        "expires_at",
        "inviter_id",
        "created_at",
    ],
};

/// Better Auth's default roles.
mod roles {
    pub const OWNER: &str = "owner";
    pub const ADMIN: &str = "admin";
    pub const MEMBER: &str = "member";
}

/// Invitation states, as `invitations.status` allows them (the first invitations of the first
/// organization take each in turn).
const INVITATION_STATUSES: [(&str, u64); 4] = [
    ("pending", 35),
    ("accepted", 35),
    ("rejected", 15),
    ("canceled", 15),
];

/// Better Auth's organization plugin allows this many members by default (`membershipLimit`);
/// its own reads of an organization assume no more.
const MEMBERSHIP_LIMIT: usize = 100;

/// Better Auth's invitations expire after 48 hours.
const INVITATION_LIFETIME: i64 = Time::hours(48);

pub struct Membership {
    pub user: usize,
    pub role: &'static str,
    pub created: Time,
}

pub struct Organization {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub created: Time,
    /// The owner first, then the others in the order they joined.
    pub members: Vec<Membership>,
}

impl Organization {
    pub fn owner(&self) -> usize {
        self.members[0].user
    }
}

pub struct Organizations {
    pub all: Vec<Organization>,
    /// Each user's first organization.
    home: Vec<Option<usize>>,
}

impl Organizations {
    pub fn home_of(&self, user: usize) -> Option<usize> {
        self.home[user]
    }
}

/// Organization `j` is founded by user `j` (so the demo user owns the first, "Acme"); every
/// other user joins one organization, the first ones likelier (up to Better Auth's default of
/// 100 members), and one in ten a second one.
pub fn plan(seed: u64, count: u64, users: &[User]) -> Organizations {
    let mut dice = Dice::new(seed, "organizations");
    let count = count as usize;
    let mut all: Vec<Organization> = (0..count)
        .map(|j| {
            let (name, slug) = if j == 0 {
                ("Acme".to_owned(), "acme".to_owned())
            } else {
                let (adjective, noun) = (
                    dice.pick(words::COMPANY_ADJECTIVES),
                    dice.pick(words::COMPANY_NOUNS),
                );
                (
                    format!("{adjective} {noun}"),
                    format!("{}-{}-{j}", adjective.to_lowercase(), noun.to_lowercase()),
                )
            };
            let created = users[j]
                .created
                .plus(dice.between(Time::minutes(1), Time::days(2)))
                .min(EPOCH);
            Organization {
                id: dice.better_auth_id(),
                name,
                slug,
                created,
                members: vec![Membership {
                    user: j,
                    role: OWNER,
                    created,
                }],
            }
        })
        .collect();
    let mut home: Vec<Option<usize>> = (0..users.len()).map(|i| (i < count).then_some(i)).collect();
    for (i, user) in users.iter().enumerate() {
        let first = match home[i] {
            Some(org) => Some(org),
            None => {
                let org = with_room(&all, dice.skewed(count));
                if let Some(org) = org {
                    home[i] = Some(org);
                    join(&mut dice, &mut all[org], i, user);
                }
                org
            }
        };
        if let Some(first) = first
            && count > 1
            && dice.percent(10)
        {
            let second = (first + 1 + dice.index(count - 1)) % count;
            if all[second].owner() != i && all[second].members.len() < MEMBERSHIP_LIMIT {
                join(&mut dice, &mut all[second], i, user);
            }
        }
    }
    Organizations { all, home }
}

/// `wanted`, or the next organization after it with room for one more member; `None` when all
/// are full (only when the sizes give more users than organizations can hold).
fn with_room(all: &[Organization], wanted: usize) -> Option<usize> {
    (0..all.len())
        .map(|step| (wanted + step) % all.len())
        .find(|&org| all[org].members.len() < MEMBERSHIP_LIMIT)
}

/// The first to join after the owner is an admin; then one in six.
fn join(dice: &mut Dice, organization: &mut Organization, user: usize, who: &User) {
    let role = if organization.members.len() == 1 || dice.percent(15) {
        ADMIN
    } else {
        MEMBER
    };
    let created = who
        .created
        .max(organization.created)
        .plus(dice.between(0, Time::days(3)))
        .min(EPOCH);
    organization.members.push(Membership {
        user,
        role,
        created,
    });
}

/// The organizations, members and invitations tables.
pub fn write(seed: u64, organizations: &Organizations, users: &[User], sink: &mut dyn Sink) {
    let mut dice = Dice::new(seed, "organization_rows");
    let mut rows = Rows::start(sink, &ORGANIZATIONS, organizations.all.len() as u64);
    for (j, org) in organizations.all.iter().enumerate() {
        let logo = (j == 0 || (j > 1 && dice.percent(50)))
            .then(|| format!("https://logos.example.com/{}.png", org.slug));
        let metadata = (j == 0 || (j > 1 && dice.percent(50))).then(|| {
            serde_json::json!({ "plan": dice.pick(words::PLANS), "seats": dice.between(3, 500) })
                .to_string()
        });
        rows.row(|r| {
            r.text(&org.id)
                .text(&org.name)
                .text(&org.slug)
                .opt_text(logo.as_deref())
                .opt_text(metadata.as_deref())
                .time(org.created);
        });
    }
    rows.finish();

    let mut dice = Dice::new(seed, "members");
    let total = organizations
        .all
        .iter()
        .map(|o| o.members.len() as u64)
        .sum();
    let mut rows = Rows::start(sink, &MEMBERS, total);
    for org in &organizations.all {
        for member in &org.members {
            let id = dice.better_auth_id();
            rows.row(|r| {
                r.text(&id)
                    .text(&org.id)
                    .text(&users[member.user].id)
                    .text(member.role)
                    .time(member.created);
            });
        }
    }
    rows.finish();

    invitations(seed, organizations, users, sink);
}

/// Two invitations an organization and one per four members, in every state. Accepted ones went
/// to people who are members now; pending ones half still valid (so they can be accepted).
fn invitations(seed: u64, organizations: &Organizations, users: &[User], sink: &mut dyn Sink) {
    let mut dice = Dice::new(seed, "invitations");
    let expected = organizations
        .all
        .iter()
        .map(|o| 2 + o.members.len() as u64 / 4)
        .sum();
    let mut rows = Rows::start(sink, &INVITATIONS, expected);
    for (j, org) in organizations.all.iter().enumerate() {
        let count = if j == 0 {
            (2 + org.members.len() / 4).max(INVITATION_STATUSES.len())
        } else {
            2 + org.members.len() / 4
        };
        let inviters: Vec<usize> = org
            .members
            .iter()
            .filter(|m| m.role != MEMBER)
            .map(|m| m.user)
            .collect();
        for k in 0..count {
            let forced = INVITATION_STATUSES.get(k).filter(|_| j == 0);
            let first = forced.is_some();
            let status = match forced {
                Some((status, _)) => *status,
                None => *dice.weighted(&INVITATION_STATUSES),
            };
            let email = match org.members.get(1 + dice.index(org.members.len())) {
                Some(member) if status == "accepted" => users[member.user].email.clone(),
                _ => format!("invitee{k}.{j}@{}", dice.pick(words::EMAIL_DOMAINS)),
            };
            let role = if (first && k == 1) || dice.percent(10) {
                None
            } else if dice.percent(20) {
                Some(ADMIN)
            } else {
                Some(MEMBER)
            };
            let created = dice.time_between(org.created, EPOCH);
            let expires = if status == "pending" && (first || dice.percent(50)) {
                STILL_VALID_UNTIL
            } else {
                created.plus(INVITATION_LIFETIME)
            };
            let inviter = &users[*dice.pick(&inviters)].id;
            let id = dice.better_auth_id();
            rows.row(|r| {
                r.text(&id)
                    .text(&org.id)
                    .text(&email)
                    .opt_text(role)
                    .text(status)
                    .time(expires)
                    .text(inviter)
                    .time(created);
            });
        }
    }
    rows.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::Scale;

    #[test]
    fn no_organization_outgrows_better_auths_default_membership_limit() {
        let sizes = Scale::Large.sizes();
        let users: Vec<User> = (0..sizes.users)
            .map(|i| User {
                id: format!("u{i}"),
                email: format!("u{i}@example.com"),
                created: Time::history_start(),
                two_factor: false,
            })
            .collect();
        let organizations = plan(1, sizes.organizations, &users);
        let largest = organizations.all.iter().map(|o| o.members.len()).max();
        assert_eq!(largest, Some(MEMBERSHIP_LIMIT));
        assert!((0..users.len()).all(|i| organizations.home_of(i).is_some()));
    }
}
