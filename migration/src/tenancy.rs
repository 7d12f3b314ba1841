//! Who may see which rows, written once: every table of the schema in one class (tenant,
//! routing, user-scoped, shared, Better Auth internal, system), the roles of the tenant model,
//! and the row-level security and grants they drive. The migration
//! `m20261207_000001_tenant_isolation` applies [`up_statements`]; the harness test
//! `tenancy_catalog` fails on a table of the catalog that is not in [`TABLES`], so a new table
//! cannot ship unclassified (and so unprotected).
//!
//! The organization of a transaction is the setting [`SETTING`], read only through
//! [`FUNCTION`], which fails closed: never set (NULL) or `''` (what a transaction-local setting
//! reads on a pooled session after its transaction) matches no row, and every write is refused
//! with 42501.

/// The setting that names the organization of the current transaction (`SET LOCAL`).
pub const SETTING: &str = "app.organization_id";
/// The one function the policies read the organization through.
pub const FUNCTION: &str = "current_organization_id";

/// The application: `NOBYPASSRLS`, owns nothing, confined to the transaction's organization on
/// every tenant table.
pub const APP_ROLE: &str = "app_service";
/// The event worker: on the event tables, reads and moves events of every organization (its
/// scan of due organizations, claims, requeue and retention); on `agent_runs`, only the event
/// links its retention clears. Not a member of [`APP_ROLE`]: handlers work through the
/// application's own pool, as one organization.
pub const WORKER_ROLE: &str = "app_worker";
/// The webhook receiver: reads the routes and inserts deliveries for the organization their
/// route names (it cannot know the organization before the route is read), and nothing else.
pub const INGEST_ROLE: &str = "app_ingest";
/// Better Auth: its eight tables, reading and creating organizations, members and invitations
/// across organizations (sign-in lists a user's memberships before any organization is chosen).
/// The service's directory helpers (`find_organization_by_slug`, `organizations_of_user`,
/// `pending_invitations_for_email`, `expire_overdue_invitations`, `create_organization`) run as
/// it too.
pub const AUTH_ROLE: &str = "app_auth";
/// The studio, read-only: every table of every organization.
pub const STUDIO_ROLE: &str = "app_studio";
/// Every role of the tenant model, created `NOLOGIN` by the migration (login roles are granted
/// membership of one of them).
pub const ROLES: [&str; 5] = [APP_ROLE, WORKER_ROLE, INGEST_ROLE, AUTH_ROLE, STUDIO_ROLE];

/// What a table holds, and so what protects its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Every row belongs to the organization in `column`: RLS enabled and forced, readable and
    /// writable only in that organization's transaction.
    Tenant { column: &'static str },
    /// Tenant rows the service must read before it knows the organization (which organization
    /// a webhook's team belongs to): RLS enabled and forced, read across organizations, written
    /// only in the owning organization's transaction.
    Routing { column: &'static str },
    /// Keyed by a user or a secret token, never by an organization: grants only.
    UserScoped,
    /// One row for everybody (users' identities, the tool catalog): grants only.
    Shared,
    /// Better Auth's own bookkeeping (verifications): grants only.
    AuthInternal,
    /// No tenant and not the application's to browse (unrouted deliveries, the migration
    /// ledger): narrow grants.
    System,
}

impl Class {
    /// The column naming the organization, for the classes row-level security guards.
    pub fn organization_column(self) -> Option<&'static str> {
        match self {
            Self::Tenant { column } | Self::Routing { column } => Some(column),
            _ => None,
        }
    }
}

/// SQL privileges, in the order `GRANT` lists them.
pub const SELECT: &str = "SELECT";
pub const INSERT: &str = "INSERT";
pub const UPDATE: &str = "UPDATE";
pub const DELETE: &str = "DELETE";
const DML: &[&str] = &[SELECT, INSERT, UPDATE, DELETE];

/// One table, its class and what the application and Better Auth may do with it.
#[derive(Debug, Clone, Copy)]
pub struct Classified {
    pub table: &'static str,
    pub class: Class,
    /// Granted to [`APP_ROLE`].
    pub app: &'static [&'static str],
    /// Granted to [`AUTH_ROLE`]: exactly what Better Auth 1.3 to 1.7 use (found by taking each
    /// privilege away in turn and running the real Better Auth flow).
    pub auth: &'static [&'static str],
}

const fn tenant(table: &'static str, column: &'static str) -> Classified {
    Classified {
        table,
        class: Class::Tenant { column },
        app: DML,
        auth: &[],
    }
}

/// Every table of the public schema.
pub const TABLES: [Classified; 20] = [
    Classified {
        auth: &[SELECT, INSERT],
        ..tenant("organizations", "id")
    },
    Classified {
        auth: &[SELECT, INSERT],
        ..tenant("members", "organization_id")
    },
    Classified {
        auth: &[SELECT, INSERT, UPDATE],
        ..tenant("invitations", "organization_id")
    },
    tenant("github_installations", "organization_id"),
    tenant("slack_connections", "organization_id"),
    tenant("linear_connections", "organization_id"),
    tenant("slack_events", "organization_id"),
    tenant("linear_events", "organization_id"),
    tenant("agent_runs", "organization_id"),
    tenant("tool_calls", "organization_id"),
    Classified {
        table: "webhook_routes",
        class: Class::Routing {
            column: "organization_id",
        },
        app: DML,
        auth: &[],
    },
    Classified {
        table: "sessions",
        class: Class::UserScoped,
        app: DML,
        auth: DML,
    },
    Classified {
        table: "accounts",
        class: Class::UserScoped,
        app: DML,
        auth: &[SELECT, INSERT, UPDATE],
    },
    Classified {
        table: "two_factors",
        class: Class::UserScoped,
        app: DML,
        auth: &[SELECT, INSERT, DELETE],
    },
    Classified {
        table: "user_tools",
        class: Class::UserScoped,
        app: DML,
        auth: &[],
    },
    Classified {
        table: "users",
        class: Class::Shared,
        app: &[SELECT],
        auth: &[SELECT, INSERT],
    },
    Classified {
        table: "tools",
        class: Class::Shared,
        app: &[SELECT, INSERT, UPDATE],
        auth: &[],
    },
    Classified {
        table: "verifications",
        class: Class::AuthInternal,
        app: &[SELECT, DELETE],
        auth: &[SELECT, INSERT, DELETE],
    },
    Classified {
        table: "unrouted_events",
        class: Class::System,
        app: &[SELECT, INSERT, DELETE],
        auth: &[],
    },
    Classified {
        table: "seaql_migrations",
        class: Class::System,
        app: &[],
        auth: &[],
    },
];

/// What a role other than the application may do across organizations on one table: the
/// privileges granted (as `GRANT` writes them, columns included), the commands its policies
/// allow on every organization's rows, and what a row it writes must satisfy.
#[derive(Debug, Clone, Copy)]
pub struct Across {
    pub role: &'static str,
    pub table: &'static str,
    pub grant: &'static str,
    pub commands: &'static [&'static str],
    /// The `WITH CHECK` of its `INSERT` and `UPDATE` policies.
    pub check: &'static str,
}

const fn across(
    role: &'static str,
    table: &'static str,
    grant: &'static str,
    commands: &'static [&'static str],
) -> Across {
    Across {
        role,
        table,
        grant,
        commands,
        check: "true",
    }
}

/// The event worker's moves: status, attempts, lease and outcome, never the payload, the
/// organization or the connection.
const WORKER_EVENTS: &str = "SELECT, DELETE, \
    UPDATE (status, attempts, due_at, last_error, processed_at, updated_at)";
/// What ingest's `INSERT .. RETURNING` returns, and all it may read.
const INGEST_EVENTS: &str = "SELECT (id, organization_id, event_id), INSERT";

/// Every grant beyond [`Classified::app`] and [`Classified::auth`], with its policies.
pub const ACROSS: [Across; 12] = [
    // Better Auth, and the directory helpers (found with the real Better Auth flow).
    across(AUTH_ROLE, "organizations", "", &[SELECT, INSERT]),
    across(AUTH_ROLE, "members", "", &[SELECT, INSERT]),
    across(AUTH_ROLE, "invitations", "", &[SELECT, INSERT, UPDATE]),
    // Retention walks the organizations by id.
    across(WORKER_ROLE, "organizations", "SELECT (id)", &[SELECT]),
    across(
        WORKER_ROLE,
        "slack_events",
        WORKER_EVENTS,
        &[SELECT, UPDATE, DELETE],
    ),
    across(
        WORKER_ROLE,
        "linear_events",
        WORKER_EVENTS,
        &[SELECT, UPDATE, DELETE],
    ),
    // Retention unlinks the runs that named a pruned event: those columns and no others.
    across(
        WORKER_ROLE,
        "agent_runs",
        "SELECT (id, organization_id, slack_event_id, linear_event_id), \
         UPDATE (slack_event_id, linear_event_id, updated_at)",
        &[SELECT, UPDATE],
    ),
    // UPDATE: retention takes its rows `FOR UPDATE SKIP LOCKED`.
    across(
        WORKER_ROLE,
        "unrouted_events",
        "SELECT, UPDATE, DELETE",
        &[],
    ),
    across(INGEST_ROLE, "webhook_routes", "SELECT", &[SELECT]),
    // A stored event names its connection, which the composite foreign key ties to the
    // event's organization: an event cannot be filed under an organization none of whose
    // connections it names.
    Across {
        check: "slack_connection_id IS NOT NULL",
        ..across(
            INGEST_ROLE,
            "slack_events",
            INGEST_EVENTS,
            &[SELECT, INSERT],
        )
    },
    Across {
        check: "linear_connection_id IS NOT NULL",
        ..across(
            INGEST_ROLE,
            "linear_events",
            INGEST_EVENTS,
            &[SELECT, INSERT],
        )
    },
    across(INGEST_ROLE, "unrouted_events", "SELECT, INSERT", &[]),
];

/// The class of `table`, `None` for a table nobody classified.
pub fn classify(table: &str) -> Option<&'static Classified> {
    TABLES.iter().find(|t| t.table == table)
}

/// The tables row-level security guards.
pub fn guarded() -> impl Iterator<Item = &'static Classified> {
    TABLES
        .iter()
        .filter(|t| t.class.organization_column().is_some())
}

/// `<column> = (SELECT current_organization_id())`: the subquery is an InitPlan, evaluated once
/// per statement rather than per row, and the comparison can use the index the column leads.
///
/// On a Citus coordinator `<column> = current_organization_id()`: Citus cannot propagate a
/// policy holding a subquery (`CREATE POLICY` fails with `unexpected non-SELECT command in
/// SubLink`, on distributed and reference tables alike). The function is `STABLE`, so an index
/// condition on it is still evaluated once per scan.
pub fn isolation_predicate(column: &str, on_citus: bool) -> String {
    match on_citus {
        true => format!("{column} = {FUNCTION}()"),
        false => format!("{column} = (SELECT {FUNCTION}())"),
    }
}

/// `NULLIF(.., '')`: after a transaction that set it with `SET LOCAL`, the setting reads `''`
/// on that session, not NULL; both match no row.
fn function_sql() -> String {
    format!(
        "CREATE FUNCTION {FUNCTION}() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE \
         AS $$ SELECT NULLIF(current_setting('{SETTING}', true), '') $$"
    )
}

/// Creates each missing role `NOLOGIN`; another database's migration creating it at the same
/// moment is tolerated (roles are cluster-wide). A role of that name that is a superuser or
/// bypasses row-level security is refused: it would void the policies.
fn roles_sql() -> String {
    let names = ROLES
        .iter()
        .map(|r| format!("'{r}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY[{names}] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ANY (ARRAY[{names}]) AND (rolsuper OR rolbypassrls)) THEN
        RAISE EXCEPTION 'a role of the tenant model is a superuser or bypasses row-level security: %',
            (SELECT string_agg(rolname, ', ') FROM pg_roles
              WHERE rolname = ANY (ARRAY[{names}]) AND (rolsuper OR rolbypassrls))
            USING ERRCODE = '42501';
    END IF;
END
$roles$"
    )
}

/// Everything the migration's `up` sends, one statement per entry (the rule on Citus), on a
/// Citus coordinator or not.
pub fn up_statements(on_citus: bool) -> Vec<String> {
    let mut out = vec![roles_sql(), function_sql()];
    for t in guarded() {
        let column = t.class.organization_column().unwrap_or("organization_id");
        let predicate = isolation_predicate(column, on_citus);
        let table = t.table;
        out.push(format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"));
        // Not on Citus: a shard move copies rows through a subscription owned by a member of the
        // table's owner, and PostgreSQL refuses to replicate into a relation whose policies
        // apply to its owner, so the rebalancer would stall. The owner is the migrator there.
        if !on_citus {
            out.push(format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"));
        }
        // TO PUBLIC: every role that is not a superuser (and, where forced, the owner) is
        // confined unless a policy below widens what it may see.
        out.push(format!(
            "CREATE POLICY tenant_isolation ON {table} FOR ALL TO PUBLIC \
             USING ({predicate}) WITH CHECK ({predicate})"
        ));
        if matches!(t.class, Class::Routing { .. }) {
            out.push(format!(
                "CREATE POLICY routing_read ON {table} FOR SELECT TO {APP_ROLE} USING (true)"
            ));
        }
        out.push(format!(
            "CREATE POLICY studio_read ON {table} FOR SELECT TO {STUDIO_ROLE} USING (true)"
        ));
    }
    for across in &ACROSS {
        for command in across.commands {
            out.push(across_policy(across, command));
        }
    }
    // One table per GRANT: on Citus a GRANT naming a distributed and a reference table at once
    // is refused.
    for t in &TABLES {
        if !t.app.is_empty() {
            out.push(format!(
                "GRANT {} ON {} TO {APP_ROLE}",
                t.app.join(", "),
                t.table
            ));
        }
        if !t.auth.is_empty() {
            out.push(format!(
                "GRANT {} ON {} TO {AUTH_ROLE}",
                t.auth.join(", "),
                t.table
            ));
        }
        out.push(format!("GRANT SELECT ON {} TO {STUDIO_ROLE}", t.table));
    }
    for across in ACROSS.iter().filter(|a| !a.grant.is_empty()) {
        out.push(format!(
            "GRANT {} ON {} TO {}",
            across.grant, across.table, across.role
        ));
    }
    out
}

/// The policy's name: the role without its `app_` prefix and the command (`worker_update`).
fn across_policy_name(role: &str, command: &str) -> String {
    let who = role.strip_prefix("app_").unwrap_or(role);
    format!("{who}_{}", command.to_lowercase())
}

/// A policy letting the role run `command` on every organization's rows of the table.
fn across_policy(across: &Across, command: &str) -> String {
    let (role, table, check) = (across.role, across.table, across.check);
    let name = across_policy_name(role, command);
    let on = format!("CREATE POLICY {name} ON {table} FOR {command} TO {role}");
    match command {
        INSERT => format!("{on} WITH CHECK ({check})"),
        UPDATE => format!("{on} USING (true) WITH CHECK ({check})"),
        _ => format!("{on} USING (true)"),
    }
}

/// Exactly undoes [`up_statements`], except the roles: they are cluster-wide, and other
/// databases of the cluster may use them.
pub fn down_statements() -> Vec<String> {
    let mut out = Vec::new();
    for t in TABLES.iter().rev() {
        out.push(format!(
            "REVOKE ALL ON {} FROM {}",
            t.table,
            ROLES.join(", ")
        ));
    }
    for across in ACROSS.iter().rev() {
        for command in across.commands {
            out.push(format!(
                "DROP POLICY {} ON {}",
                across_policy_name(across.role, command),
                across.table
            ));
        }
    }
    for t in guarded() {
        let table = t.table;
        out.push(format!("DROP POLICY studio_read ON {table}"));
        if matches!(t.class, Class::Routing { .. }) {
            out.push(format!("DROP POLICY routing_read ON {table}"));
        }
        out.push(format!("DROP POLICY tenant_isolation ON {table}"));
        out.push(format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"));
        out.push(format!("ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"));
    }
    out.push(format!("DROP FUNCTION {FUNCTION}()"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_classified_once() {
        let mut names: Vec<_> = TABLES.iter().map(|t| t.table).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLES.len(), "a table is classified twice");
        assert_eq!(
            classify("agent_runs").map(|t| t.class),
            Some(Class::Tenant {
                column: "organization_id"
            })
        );
        assert!(classify("nobody_knows_me").is_none());
    }

    #[test]
    fn the_tenant_tables_of_the_distribution_are_guarded() {
        let guarded: Vec<_> = guarded().map(|t| t.table).collect();
        for table in crate::m20261201_000003_tenant_keys_swap::TENANT_TABLES {
            assert!(guarded.contains(&table), "{table} is not guarded by RLS");
        }
        assert!(guarded.contains(&"organizations"));
        assert!(guarded.contains(&"webhook_routes"));
        assert!(!guarded.contains(&"sessions"));
    }

    #[test]
    fn the_predicate_reads_the_organization_once_per_statement() {
        assert_eq!(
            isolation_predicate("organization_id", false),
            "organization_id = (SELECT current_organization_id())"
        );
        assert_eq!(
            isolation_predicate("id", true),
            "id = current_organization_id()"
        );
        let on_citus = up_statements(true);
        assert!(
            on_citus
                .iter()
                .all(|s| !s.contains("(SELECT current_organization_id())"))
        );
        assert!(on_citus.iter().any(|s| s.contains("USING (organization_id = current_organization_id()) WITH CHECK (organization_id = current_organization_id())")));
        assert!(
            function_sql().contains("NULLIF(current_setting('app.organization_id', true), '')")
        );
    }

    #[test]
    fn the_owner_obeys_the_policies_except_on_citus() {
        let forced = |on_citus| {
            up_statements(on_citus)
                .iter()
                .filter(|s| s.ends_with("FORCE ROW LEVEL SECURITY"))
                .count()
        };
        assert_eq!(forced(false), guarded().count());
        assert_eq!(forced(true), 0, "a forced table stalls Citus's shard moves");
    }

    #[test]
    fn down_undoes_every_policy_up_creates() {
        let created = up_statements(false)
            .iter()
            .filter_map(|s| s.strip_prefix("CREATE POLICY ").map(policy_and_table))
            .collect::<Vec<_>>();
        let mut dropped = down_statements()
            .iter()
            .filter_map(|s| s.strip_prefix("DROP POLICY ").map(policy_and_table))
            .collect::<Vec<_>>();
        let mut created_sorted = created.clone();
        created_sorted.sort();
        dropped.sort();
        assert_eq!(created_sorted, dropped);
        assert!(created.len() > guarded().count() * 2);
    }

    fn policy_and_table(rest: &str) -> (String, String) {
        let words: Vec<_> = rest.split_whitespace().collect();
        (words[0].to_owned(), words[2].to_owned())
    }

    #[test]
    fn across_policies_allow_only_the_commands_each_role_uses() {
        let policy = |role, table, command| {
            let across = ACROSS
                .iter()
                .find(|a| a.role == role && a.table == table)
                .expect("listed");
            across_policy(across, command)
        };
        assert_eq!(
            policy(AUTH_ROLE, "members", INSERT),
            "CREATE POLICY auth_insert ON members FOR INSERT TO app_auth WITH CHECK (true)"
        );
        assert_eq!(
            policy(AUTH_ROLE, "members", SELECT),
            "CREATE POLICY auth_select ON members FOR SELECT TO app_auth USING (true)"
        );
        assert_eq!(
            policy(WORKER_ROLE, "slack_events", UPDATE),
            "CREATE POLICY worker_update ON slack_events FOR UPDATE TO app_worker \
             USING (true) WITH CHECK (true)"
        );
        assert_eq!(
            policy(WORKER_ROLE, "linear_events", DELETE),
            "CREATE POLICY worker_delete ON linear_events FOR DELETE TO app_worker USING (true)"
        );
        assert_eq!(
            policy(INGEST_ROLE, "linear_events", INSERT),
            "CREATE POLICY ingest_insert ON linear_events FOR INSERT TO app_ingest \
             WITH CHECK (linear_connection_id IS NOT NULL)"
        );
        assert_eq!(across_policy_name("studio", SELECT), "studio_select");
        let up = up_statements(false);
        for grant in [
            "GRANT SELECT (id, organization_id, slack_event_id, linear_event_id), \
             UPDATE (slack_event_id, linear_event_id, updated_at) ON agent_runs TO app_worker",
            "GRANT SELECT (id) ON organizations TO app_worker",
            "GRANT SELECT (id, organization_id, event_id), INSERT ON slack_events TO app_ingest",
            "GRANT SELECT, INSERT ON unrouted_events TO app_ingest",
        ] {
            assert!(up.contains(&grant.to_owned()), "{grant}");
        }
        assert!(
            !up.iter().any(|s| s.contains("GRANT app_service")),
            "the worker is no member of the application role"
        );
        assert!(
            !up.iter().any(|s| s.starts_with("GRANT  ON")),
            "an across entry without a grant grants nothing"
        );
    }
}
