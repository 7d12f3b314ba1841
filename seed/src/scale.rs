//! How much to generate: the named scales and the row counts they stand for.

use std::{fmt, str::FromStr};

use crate::SeedError;

/// `small`, `medium`, `large`, or a number of webhook events, everything else scaled from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// 2 000 events, 50 users: every table, every state, in a second.
    Small,
    /// 100 000 events, 1 000 users.
    Medium,
    /// 1 000 000 events, 100 000 runs, 300 000 tool calls, 10 000 users.
    Large,
    /// This many events; runs, tool calls, users and organizations in the same proportions.
    Events(u64),
}

impl Scale {
    pub fn events(self) -> u64 {
        match self {
            Scale::Small => 2_000,
            Scale::Medium => 100_000,
            Scale::Large => 1_000_000,
            Scale::Events(events) => events,
        }
    }

    /// The row counts of this scale: per ten events one agent run, per run three tool calls,
    /// per hundred events one user (at least 50), per twenty users one organization (at least 5);
    /// seven events in ten from Slack, the newest 5% still pending.
    pub fn sizes(self) -> Sizes {
        let events = self.events();
        let users = (events / 100).max(50);
        Sizes {
            users,
            organizations: (users / 20).max(5),
            slack_events: events * 7 / 10,
            linear_events: events - events * 7 / 10,
            agent_runs: events / 10,
            tool_calls: events * 3 / 10,
            pending_percent: 5,
        }
    }
}

impl FromStr for Scale {
    type Err = SeedError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim() {
            "small" => Ok(Scale::Small),
            "medium" => Ok(Scale::Medium),
            "large" => Ok(Scale::Large),
            other => other
                .replace(['_', ' '], "")
                .parse()
                .map(Scale::Events)
                .map_err(|_| SeedError::UnknownScale {
                    value: value.to_owned(),
                }),
        }
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scale::Small => f.write_str("small"),
            Scale::Medium => f.write_str("medium"),
            Scale::Large => f.write_str("large"),
            Scale::Events(events) => write!(f, "{events} events"),
        }
    }
}

/// Row counts of the main tables; the others follow from them (sessions and accounts per user,
/// invitations and connections per organization, settings per user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub users: u64,
    pub organizations: u64,
    pub slack_events: u64,
    pub linear_events: u64,
    pub agent_runs: u64,
    pub tool_calls: u64,
    /// The newest events still waiting for a worker, in percent of each events table (100: a
    /// queue nobody has worked yet).
    pub pending_percent: u8,
}

impl Sizes {
    /// At least one user and organization (an organization needs an owner), no more
    /// organizations than users, at most 100% pending, and no tool calls without runs.
    pub fn normalized(self) -> Sizes {
        let users = self.users.max(1);
        Sizes {
            users,
            organizations: self.organizations.clamp(1, users),
            pending_percent: self.pending_percent.min(100),
            tool_calls: if self.agent_runs == 0 {
                0
            } else {
                self.tool_calls
            },
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_is_the_size_of_the_issue() {
        let large: Scale = "large".parse().unwrap();
        let sizes = large.sizes();
        assert_eq!(sizes.slack_events + sizes.linear_events, 1_000_000);
        assert_eq!(
            (sizes.agent_runs, sizes.tool_calls, sizes.users),
            (100_000, 300_000, 10_000)
        );
        assert_eq!("250_000".parse::<Scale>().unwrap(), Scale::Events(250_000));
    }

    #[test]
    fn an_unknown_scale_names_the_accepted_ones() {
        let err = "huge".parse::<Scale>().unwrap_err().to_string();
        assert!(
            err.contains("`huge`") && err.contains("small, medium, large"),
            "{err}"
        );
    }
}
