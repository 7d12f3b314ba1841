// Runs the real `better-auth` package against a database migrated by this workspace, configured
// with nothing but the plural/snake_case mapping: each model's plural name (`modelName`) and
// Kysely's CamelCasePlugin, which turns `emailVerified` into `email_verified` and `twoFactors`
// into `two_factors`; plus the setting docs/security.md recommends: verification identifiers
// stored hashed (`verification.storeIdentifier: "hashed"`), so a password-reset token
// (`reset-password:<token>`) is never readable in the database. Releases before 1.7 do not know
// the setting, ignore it and store identifiers in clear; the reset check proves both.
//
//   DATABASE_URL=postgresql://... BETTER_AUTH_PACKAGE=better-auth-1-3 node check.mjs
//
// Prints one line per check, then "N passed, M failed"; exits non-zero when any check failed.
import { CamelCasePlugin, Kysely, PostgresDialect } from "kysely";
import pg from "pg";

const url = process.env.DATABASE_URL;
if (!url) throw new Error("DATABASE_URL is not set");
const pkg = process.env.BETTER_AUTH_PACKAGE ?? "better-auth";
const { betterAuth } = await import(pkg);
const { organization, twoFactor } = await import(`${pkg}/plugins`);
const { getSchema } = await import(`${pkg}/db`);
const { readFileSync } = await import("node:fs");
const { createHash } = await import("node:crypto");
const manifest = new URL(`./node_modules/${pkg}/package.json`, import.meta.url);
const { version } = JSON.parse(readFileSync(manifest, "utf8"));

// `verification.storeIdentifier` is known from 1.7 on (1.4.22 and 1.3.34 ignore it).
const [major, minor] = version.split(".").map(Number);
const hashesIdentifiers = major > 1 || (major === 1 && minor >= 7);

const pool = new pg.Pool({ connectionString: url, max: 4 });
const db = new Kysely({ dialect: new PostgresDialect({ pool }), plugins: [new CamelCasePlugin()] });

const plural = (name) => ({ modelName: `${name}s` });
const resetTokens = [];
const plugins = [
  organization({
    schema: { organization: plural("organization"), member: plural("member"), invitation: plural("invitation") },
  }),
  twoFactor({ schema: { twoFactor: plural("twoFactor") } }),
];
const options = {
  baseURL: "http://localhost:3000",
  secret: "compat-check-secret-compat-check-secret",
  database: { db, type: "postgres" },
  user: plural("user"),
  session: plural("session"),
  account: plural("account"),
  verification: { ...plural("verification"), storeIdentifier: "hashed" },
  emailAndPassword: {
    enabled: true,
    // Instead of an email: keep the token, as the link in it would carry.
    sendResetPassword: async ({ token }) => {
      resetTokens.push(token);
    },
  },
  plugins,
  logger: { disabled: true },
};
const auth = betterAuth(options);

console.log(`better-auth ${version}`);
let checks = 0;
let failures = 0;
const check = async (name, fn) => {
  checks += 1;
  try {
    await fn();
    console.log(`ok      ${name}`);
  } catch (err) {
    failures += 1;
    console.log(`FAILED  ${name}: ${err?.message ?? err}`);
  }
};
const expect = (cond, message) => {
  if (!cond) throw new Error(message);
};

const snake = (name) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const TYPES = {
  string: ["text", "character varying"],
  boolean: ["boolean"],
  date: ["timestamp with time zone"],
  number: ["integer", "bigint"],
  json: ["jsonb", "text"],
};

await check("every table and field Better Auth knows exists with a fitting type", async () => {
  // Keyed by each table's configured name: the plural model name.
  const schema = getSchema(options);
  const { rows } = await pool.query(
    `SELECT table_name, column_name, data_type, is_nullable = 'YES' AS nullable, column_default
     FROM information_schema.columns WHERE table_schema = current_schema()`,
  );
  const columns = new Map(rows.map((r) => [`${r.table_name}.${r.column_name}`, r]));
  const problems = [];
  for (const [model, table] of Object.entries(schema)) {
    const tableName = snake(model);
    const known = new Set([`${tableName}.id`]);
    for (const [field, attr] of Object.entries(table.fields)) {
      const key = `${tableName}.${snake(attr.fieldName ?? field)}`;
      known.add(key);
      const column = columns.get(key);
      if (!column) {
        problems.push(`${key} is missing`);
        continue;
      }
      const type = Array.isArray(attr.type) ? "string" : attr.type;
      if (TYPES[type] && !TYPES[type].includes(column.data_type)) {
        problems.push(`${key} is ${column.data_type}, Better Auth writes ${type}`);
      }
      const mayBeOmitted = attr.required === false || attr.defaultValue !== undefined;
      if (mayBeOmitted && !column.nullable && column.column_default === null) {
        problems.push(`${key} is NOT NULL without a default, but Better Auth may omit it`);
      }
    }
    for (const [key, column] of columns) {
      if (key.startsWith(`${tableName}.`) && !known.has(key) && !column.nullable && column.column_default === null) {
        problems.push(`${key} is NOT NULL without a default, and Better Auth never writes it`);
      }
    }
  }
  expect(problems.length === 0, problems.join("; "));
});

const cookieOf = (res) => {
  const cookie = res.headers.get("set-cookie");
  expect(cookie, `no session cookie (status ${res.status})`);
  return new Headers({ cookie: cookie.split(";")[0] });
};

let owner;
await check("sign up with email and password", async () => {
  const res = await auth.api.signUpEmail({
    body: { name: "Owner", email: "owner@example.com", password: "correct horse battery" },
    asResponse: true,
  });
  expect(res.ok, `status ${res.status}: ${await res.text()}`);
  owner = cookieOf(res);
  const { rows } = await pool.query(
    "SELECT a.password FROM accounts a JOIN users u ON u.id = a.user_id WHERE u.email = 'owner@example.com'",
  );
  expect(rows.length === 1 && rows[0].password && !rows[0].password.includes("correct horse"), "no hashed password");
});

await check("sign in and read the session back", async () => {
  const res = await auth.api.signInEmail({
    body: { email: "owner@example.com", password: "correct horse battery" },
    asResponse: true,
  });
  expect(res.ok, `status ${res.status}`);
  owner = cookieOf(res);
  const session = await auth.api.getSession({ headers: owner });
  expect(session?.user?.email === "owner@example.com", "no session user");
  expect(session.user.emailVerified === false, "emailVerified not read back");
  expect(session.session.expiresAt instanceof Date, "expiresAt not a date");
});

let org;
await check("create an organization and make it active", async () => {
  org = await auth.api.createOrganization({
    body: { name: "Acme", slug: "acme", metadata: { plan: "team" } },
    headers: owner,
  });
  expect(org?.id, "no organization");
  await auth.api.setActiveOrganization({ body: { organizationId: org.id }, headers: owner });
  const session = await auth.api.getSession({ headers: owner });
  expect(session.session.activeOrganizationId === org.id, "active organization not stored");
});

await check("invite a member, who signs up and accepts", async () => {
  const invitation = await auth.api.createInvitation({
    body: { email: "member@example.com", role: "member", organizationId: org.id },
    headers: owner,
  });
  expect(invitation?.status === "pending", "invitation not pending");
  const res = await auth.api.signUpEmail({
    body: { name: "Member", email: "member@example.com", password: "another long password" },
    asResponse: true,
  });
  const member = cookieOf(res);
  await auth.api.acceptInvitation({ body: { invitationId: invitation.id }, headers: member });
  const full = await auth.api.getFullOrganization({ query: { organizationId: org.id }, headers: owner });
  expect(full.members.length === 2, `expected 2 members, got ${full.members.length}`);
  const { rows } = await pool.query("SELECT status, created_at FROM invitations");
  expect(rows[0].status === "accepted" && rows[0].created_at instanceof Date, "invitation not accepted");
});

await check(
  `reset a password; the token is stored ${hashesIdentifiers ? "only hashed" : "in clear (no storeIdentifier before 1.7)"}`,
  async () => {
    const email = "member@example.com";
    await auth.api.requestPasswordReset({ body: { email, redirectTo: "/reset" } });
    const token = resetTokens.at(-1);
    expect(token, "no reset token was sent");
    const plain = `reset-password:${token}`;
    const hashed = createHash("sha256").update(plain).digest("base64url");
    const { rows } = await pool.query("SELECT identifier FROM verifications");
    const stored = rows.map((r) => r.identifier);
    if (hashesIdentifiers) {
      expect(stored.includes(hashed), `the identifier is not SHA-256 hashed: ${stored.length} rows`);
      expect(!stored.some((i) => i.includes(token)), "the reset token is stored in clear");
    } else {
      expect(stored.includes(plain), "this release was expected to store the identifier in clear");
    }
    await auth.api.resetPassword({ body: { newPassword: "a brand new password", token } });
    const res = await auth.api.signInEmail({
      body: { email, password: "a brand new password" },
      asResponse: true,
    });
    expect(res.ok, `sign-in with the new password: status ${res.status}`);
    const { rows: left } = await pool.query(
      "SELECT count(*)::int AS n FROM verifications WHERE identifier IN ($1, $2)",
      [plain, hashed],
    );
    expect(left[0].n === 0, "the reset verification was not consumed");
  },
);

await check("enable two-factor authentication", async () => {
  const res = await auth.api.enableTwoFactor({ body: { password: "correct horse battery" }, headers: owner });
  expect(res?.totpURI, "no TOTP URI");
  const { rows } = await pool.query(
    `SELECT t.verified, t.failed_verification_count FROM two_factors t
     JOIN users u ON u.id = t.user_id WHERE u.email = 'owner@example.com'`,
  );
  expect(rows.length === 1, "no two_factors row");
});

await check("sign out ends the session", async () => {
  await auth.api.signOut({ headers: owner });
  const session = await auth.api.getSession({ headers: owner });
  expect(!session, "session still valid");
});

await db.destroy();
console.log(`${checks - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
